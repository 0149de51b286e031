"""Hand-made safetensors files, valid and hostile, for the verdict parity test (C++ accepts exactly what
huggingface/safetensors 0.8.0 accepts, except the documented stricter rules) and the fuzz seed corpus.

Each case: (name, bytes, deliberate) where `deliberate` is None when verl must agree with the reference,
else the reason verl rejects a file the reference accepts.
"""
import json
import struct


def raw(header, data=b"", n=None):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def entry(name, dtype, shape, b, e):
    return f'"{name}":{{"dtype":"{dtype}","shape":{json.dumps(shape)},"data_offsets":[{b},{e}]}}'


GOOD = "{" + entry("x", "F32", [2], 0, 8) + "}"
Z8 = b"\0" * 8

SPEC_FIRST_BYTE = "the spec requires the header to start with '{'; the reference does not check it"
DUPLICATE = "duplicate keys are rejected; the reference keeps the last one"
ARRAY_ENTRY = "a tensor entry must be a JSON object; serde also accepts the array form"
DTYPE_MAP = "a dtype must be a string; serde also accepts an enum's map form {\"F32\": null}"


def cases():
    c = []
    add = lambda name, b, deliberate=None: c.append((name, b, deliberate))
    add("good", raw(GOOD, Z8))
    add("good_padded", raw(GOOD + "      ", Z8))
    add("good_padded_tab_newline", raw(GOOD + "\t\n\r ", Z8))
    add("leading_space", raw(" " + GOOD, Z8), SPEC_FIRST_BYTE)
    add("leading_bom", raw(b"\xef\xbb\xbf" + GOOD.encode(), Z8))
    add("trailing_nul", raw(GOOD + "\0", Z8))
    add("nul_in_middle", raw(GOOD[:-1] + "\0}", Z8))
    add("trailing_garbage", raw(GOOD + "x", Z8))
    add("two_objects", raw(GOOD + GOOD, Z8))
    add("empty_object", raw("{}"))
    add("empty_object_with_data", raw("{}", b"\0"))
    add("metadata_only", raw('{"__metadata__":{"format":"pt"}}'))
    add("array_header", raw("[]"))
    add("string_header", raw('"x"'))
    add("header_len_zero", raw(""))
    add("file_too_small", b"\x05\0\0")
    add("file_empty", b"")
    add("header_len_beyond_file", raw(GOOD, Z8, n=1000))
    add("header_len_u64_max", raw(GOOD, Z8, n=2**64 - 1))
    add("header_len_over_100M", raw(GOOD, Z8, n=100_000_001))
    add("invalid_utf8_in_name", raw(b'{"x\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("overlong_utf8", raw(b'{"\xc0\xaf":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("utf8_surrogate_bytes", raw(b'{"\xed\xa0\x80":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("invalid_utf8_in_padding", raw(GOOD.encode() + b"\xff", Z8))
    add("utf8_name", raw(("{" + entry("\u00e9\u4e2d\U0001f600", "F32", [2], 0, 8) + "}").encode(), Z8))
    add("escaped_name", raw('{"\\u00e9\\n\\"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("escaped_nul_name", raw('{"a\\u0000b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("surrogate_pair_escape", raw('{"\\ud83d\\ude00":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("lone_surrogate_escape", raw('{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("raw_control_char_in_name", raw('{"a\nb":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("empty_name", raw("{" + entry("", "F32", [2], 0, 8) + "}", Z8))
    add("dup_name_same_entry", raw("{" + entry("x", "F32", [2], 0, 8) + "," + entry("x", "F32", [2], 0, 8) + "}", Z8), DUPLICATE)
    add("dup_name_two_entries", raw("{" + entry("x", "F32", [1], 0, 4) + "," + entry("x", "F32", [1], 4, 8) + "}", Z8))
    add("dup_metadata", raw('{"__metadata__":{"a":"b"},"__metadata__":{"a":"c"},' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("dup_metadata_key", raw('{"__metadata__":{"a":"b","a":"c"},' + entry("x", "F32", [2], 0, 8) + "}", Z8), DUPLICATE)
    add("dup_field_dtype", raw('{"x":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("dup_field_shape", raw('{"x":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}', Z8))
    add("unknown_field", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"foo":{"a":[1,{"b":null}]}}}', Z8))
    add("missing_dtype", raw('{"x":{"shape":[2],"data_offsets":[0,8]}}', Z8))
    add("missing_shape", raw('{"x":{"dtype":"F32","data_offsets":[0,8]}}', Z8))
    add("missing_offsets", raw('{"x":{"dtype":"F32","shape":[2]}}', Z8))
    add("entry_number", raw('{"x":5}'))
    add("entry_null", raw('{"x":null}'))
    add("entry_string", raw('{"x":"F32"}'))
    add("entry_array", raw('{"x":["F32",[2],[0,8]]}', Z8), ARRAY_ENTRY)
    add("metadata_null", raw('{"__metadata__":null,' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_empty", raw('{"__metadata__":{},' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_non_string", raw('{"__metadata__":{"a":1},' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_nested", raw('{"__metadata__":{"a":{"b":"c"}},' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_string", raw('{"__metadata__":"s",' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_array", raw('{"__metadata__":[],' + entry("x", "F32", [2], 0, 8) + "}", Z8))
    add("metadata_after_tensors", raw("{" + entry("x", "F32", [2], 0, 8) + ',"__metadata__":{"k":"v"}}', Z8))
    for label, shape in [("negative", "[-2]"), ("float", "[2.0]"), ("exponent", "[2e0]"), ("minus_zero", "[-0]"),
                         ("beyond_u64", "[18446744073709551616]"), ("bool", "[true]"), ("string", '["2"]'),
                         ("null", "null"), ("number", "2"), ("nested", "[[2]]"), ("object", "{}"),
                         ("leading_zero", "[02]"), ("plus", "[+2]")]:
        add(f"shape_{label}", raw('{"x":{"dtype":"F32","shape":' + shape + ',"data_offsets":[0,8]}}', Z8))
    add("shape_overflow_product", raw("{" + entry("x", "F32", [2**32, 2**32], 0, 8) + "}", Z8))
    add("shape_overflow_bits", raw("{" + entry("x", "F32", [2**62], 0, 8) + "}", Z8))
    add("shape_overflow_bytes", raw("{" + entry("x", "F32", [2**59], 0, 8) + "}", Z8))
    add("shape_zero", raw("{" + entry("x", "F32", [0, 5], 0, 0) + "}"))
    add("shape_zero_first_then_huge", raw("{" + entry("x", "F32", [0, 2**64 - 1, 2**64 - 1], 0, 0) + "}"))
    add("shape_huge_then_zero", raw("{" + entry("x", "F32", [2**64 - 1, 2**64 - 1, 0], 0, 0) + "}"))
    add("scalar", raw("{" + entry("x", "F32", [], 0, 4) + "}", b"\0" * 4))
    add("span_mismatch", raw("{" + entry("x", "F32", [3], 0, 8) + "}", Z8))
    add("span_mismatch_short", raw("{" + entry("x", "F64", [2], 0, 8) + "}", Z8))
    add("dtype_unknown", raw("{" + entry("x", "F31", [2], 0, 8) + "}", Z8))
    add("dtype_lowercase", raw("{" + entry("x", "f32", [2], 0, 8) + "}", Z8))
    add("dtype_number", raw('{"x":{"dtype":1,"shape":[2],"data_offsets":[0,8]}}', Z8))
    add("dtype_object", raw('{"x":{"dtype":{"F32":null},"shape":[2],"data_offsets":[0,8]}}', Z8), DTYPE_MAP)
    add("offsets_three", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', Z8))
    add("offsets_one", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', Z8))
    add("offsets_negative", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', Z8))
    add("offsets_float", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', Z8))
    add("offsets_object", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":{"0":8}}}', Z8))
    add("offsets_reversed", raw("{" + entry("x", "F32", [0], 8, 0) + "}", Z8))
    add("offsets_gap_at_start", raw("{" + entry("x", "F32", [2], 4, 12) + "}", b"\0" * 12))
    add("offsets_gap_between", raw("{" + entry("x", "F32", [1], 0, 4) + "," + entry("y", "F32", [1], 8, 12) + "}", b"\0" * 12))
    add("offsets_overlap", raw("{" + entry("x", "F32", [2], 0, 8) + "," + entry("y", "F32", [1], 4, 8) + "}", Z8))
    add("offsets_same_span", raw("{" + entry("x", "F32", [2], 0, 8) + "," + entry("y", "F32", [2], 0, 8) + "}", b"\0" * 16))
    add("offsets_unsorted_names", raw("{" + entry("b", "F32", [1], 0, 4) + "," + entry("a", "F32", [1], 4, 8) + "}", Z8))
    add("offsets_beyond_file", raw(GOOD, b"\0" * 4))
    add("data_longer_than_tensors", raw(GOOD, b"\0" * 12))
    add("offsets_u64_max", raw("{" + entry("x", "F32", [0], 0, 2**64 - 1) + "}"))
    add("zero_size_twice_same_offset", raw("{" + entry("x", "F32", [0], 0, 0) + "," + entry("y", "I8", [0], 0, 0) + "}"))
    add("zero_size_at_end", raw("{" + entry("x", "F32", [2], 0, 8) + "," + entry("y", "F32", [0], 8, 8) + "}", Z8))
    add("zero_size_in_middle", raw("{" + entry("x", "F32", [1], 0, 4) + "," + entry("z", "F32", [0], 4, 4) + "," + entry("y", "F32", [1], 4, 8) + "}", Z8))
    add("zero_size_beyond", raw("{" + entry("x", "F32", [2], 0, 8) + "," + entry("y", "F32", [0], 12, 12) + "}", Z8))
    add("f4_even", raw("{" + entry("x", "F4", [2, 4], 0, 4) + "}", b"\0" * 4))
    add("f4_odd", raw("{" + entry("x", "F4", [3], 0, 2) + "}", b"\0" * 2))
    add("f6_multiple_of_4", raw("{" + entry("x", "F6_E2M3", [4], 0, 3) + "}", b"\0" * 3))
    add("f6_not_multiple_of_4", raw("{" + entry("x", "F6_E3M2", [2], 0, 2) + "}", b"\0" * 2))
    add("comment", raw('{/*c*/"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Z8))
    add("trailing_comma", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],}}', Z8))
    add("single_quotes", raw("{'x':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", Z8))
    add("unterminated", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', Z8))
    for label, value in [("1e400", "1e400"), ("minus_1e400", "-1e400"), ("array_1e400", "[1e400]"),
                         ("30_digits", "1" + "0" * 30), ("400_digits", "1" + "0" * 400), ("1e_minus_400", "1e-400"),
                         ("minus_zero", "-0"), ("float_exp", "0.0e0"), ("surrogate_pair", '"\\ud800\\udc00"')]:
        add(f"unknown_field_number_{label}",
            raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"u":' + value + "}}", Z8))
    add("top_level_extra_object", raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"a":1,"a":2}}', Z8))
    add("nan_literal", raw('{"x":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}', Z8))
    # serde_json allows 127 nested levels: the header object, the entry, then 125 arrays in an unknown field.
    for depth in (125, 126):
        add(f"nested_unknown_field_{depth + 2}_levels",
            raw('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"u":' + "[" * depth + "]" * depth + "}}", Z8))
    # Every dtype, one tensor each, as the reference's writer lays them out.
    widths = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
              "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
              "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
    off, parts = 0, []
    for i, (d, bits) in enumerate(sorted(widths.items(), key=lambda kv: -kv[1])):
        nb = 4 * bits // 8  # 4 elements
        parts.append(entry(f"t_{d}", d, [4], off, off + nb))
        off += nb
    add("every_dtype", raw("{" + ",".join(parts) + "}", bytes(range(256)) * (off // 256) + bytes(range(off % 256))))
    return c
