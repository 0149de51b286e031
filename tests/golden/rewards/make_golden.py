"""Golden vectors for verl-cpp's rule rewards (include/verl/rewards/{gsm8k,math_answer,compute_score}.hpp).

Reference: verl 0.7.1 (PyPI), the pure-Python rules in
  verl/utils/reward_score/gsm8k.py        extract_solution, compute_score
  verl/utils/reward_score/math_reward.py  last_boxed_only_string, remove_boxed, strip_string, is_equiv,
                                          compute_score
  verl/utils/reward_score/math_dapo.py    normalize_final_answer, is_correct_minerva, compute_score
  verl/utils/reward_score/__init__.py     default_compute_score (data_source dispatch)

Command (from the repository root; verl installed without its dependencies into a scratch venv):
    python3 -m venv /tmp/golden-venv-adv
    /tmp/golden-venv-adv/bin/pip install verl==0.7.1 --no-deps
    /tmp/golden-venv-adv/bin/python tests/golden/rewards/make_golden.py

It writes tests/golden/rewards/{gsm8k,math,math_dapo,default_compute_score}.json, read by
tests/unit/rewards/test_rewards.cpp, which requires identical strings and scores. Inputs are hand-picked edge
cases plus strings drawn (fixed seed) from fragments that exercise each normalisation step; Python's str is a
sequence of code points, so the fragments include multi-byte UTF-8 characters wherever verl indexes or counts
characters (the 300-character clip of GSM8K, `len(...) <= 2`, `substr[0]`, `split[0]`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import random
import sys
from pathlib import Path

VERL_VERSION = "0.7.1"
HERE = Path(__file__).resolve().parent


def _check_version() -> None:
    found = importlib.metadata.version("verl")
    if found != VERL_VERSION:
        sys.exit(f"make_golden.py pins verl {VERL_VERSION}, found verl {found}")


_check_version()
from verl.utils.reward_score import default_compute_score  # noqa: E402
from verl.utils.reward_score import gsm8k  # noqa: E402
from verl.utils.reward_score import math_dapo  # noqa: E402
from verl.utils.reward_score import math_reward  # noqa: E402

rng = random.Random(20260601)

UNICODE = ["é", "中", "😀", "π", "\u00a0", "ß", "Ω", "٣"]


def quiet(fn, *args, **kwargs):
    """Calls fn with stdout swallowed (math_reward prints the exceptions it catches)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def draw(fragments: list[str], lo: int, hi: int) -> str:
    return "".join(rng.choice(fragments) for _ in range(rng.randint(lo, hi)))


# ---------------------------------------------------------------------------------------------------------
# GSM8K

GSM_HAND = [
    "", "#### 42", "####42", "#### -42", "#### --42", "#### -", "#### .", "#### ,", "#### 1,234", "#### 1,234.50",
    "#### $1,234", "#### -1.5.3", "##### 7", "###### 8", "#### 5 #### 6", "answer #### 72\n", "#### 72.",
    "the answer is 18.", "the answer is 18", "1, 2, 3,", "...", ". . .", ".", "-", "-.", "-,5", "x-1", "12-3",
    "no numbers here", "#### abc", "####  5", "#\u00a0### 5", "#### ٣", "３", "#### ３", "1.2.3", "3,", "-0",
    "The total is $18. #### 18", "a" * 299 + "#### 5", "a" * 296 + "#### 5", "#### 5" + "a" * 296,
    "#### 5" + "a" * 294, "#### 5" + "a" * 295, "#### 5" + "é" * 294, "#### 5" + "😀" * 295,
    "#### 12" + "😀" * 295, "#### 12" + "中" * 294, "7" + "x" * 299, "7" + "x" * 300, "77" + "é" * 299,
    "#### 9\n" + "\n" * 400, "😀#### 3😀", "####\t5", "####\n5", "#### 1e5", "#### +5",
]

GSM_FRAGMENTS = ["#### ", "####", "#", " ", "-", ".", ",", "$", "1", "23", "456", "0", "a", "b", "\n", "The answer is ",
                 "x", ":", "=", "é", "中", "😀", "%", "7,000", "3.14"]


def gsm8k_cases() -> dict:
    inputs = list(GSM_HAND)
    for _ in range(220):
        inputs.append(draw(GSM_FRAGMENTS, 0, 14))
    for _ in range(30):  # long ones: the 300-character clip
        body = draw(["word ", "12 ", "é", "😀", "中", "\n", "#### 3 ", ", "], 60, 140)
        inputs.append(body + draw(GSM_FRAGMENTS, 0, 6))
    extract = []
    for s in inputs:
        extract.append({"s": s, "strict": gsm8k.extract_solution(s, "strict"),
                        "flexible": gsm8k.extract_solution(s, "flexible")})
    scores = []
    for i, s in enumerate(inputs):
        strict = gsm8k.extract_solution(s, "strict")
        flexible = gsm8k.extract_solution(s, "flexible")
        # Ground truths that match sometimes: the extracted answers themselves, perturbed ones, fixed ones.
        truths = {"42", "18", "1234", ""}
        for a in (strict, flexible):
            if a is not None:
                truths.add(a)
                truths.add(a + "0")
        for gt in rng.sample(sorted(truths), min(3, len(truths))):
            for method in ("strict", "flexible"):
                for fmt, full in (rng.choice(((0.0, 1.0), (0.1, 1.0), (-0.5, 2.5))),):
                    out = gsm8k.compute_score(s, gt, method=method, format_score=fmt, score=full)
                    scores.append({"i": i, "gt": gt, "method": method, "format_score": fmt, "score": full,
                                   "out": float(out)})
    # compute_score cases name their response by its index `i` into `extract` (long responses, stored once).
    return {"extract": extract, "compute_score": scores}


# ---------------------------------------------------------------------------------------------------------
# MATH (hendrycks normalisation)

ANSWER_FRAGMENTS = [
    "\\frac", "\\dfrac", "\\tfrac", "{", "}", "1", "2", "12", "72", "0.5", ".5", " .5", "{.", "0", "-", "/", "3/4",
    "\\sqrt", "\\sqrt{2}", "\\sqrt3", "\\text{ ", "\\text{", "cm}", " ", "\\!", "\\\\", "\\left(", "\\right)",
    "\\left", "\\right", "(", ")", "^\\circ", "^{\\circ}", "\\$", "$", "\\%", "\\\\%", "%", "=", "x", "k", "ab",
    "\n", ",", "\\pi", "\\infty", "a", "b", "é", "中", "😀", "π", "\\mbox{", "\\boxed{", "\\fbox{", "10", "-3",
    "\\frac12", "\\frac1{72}", "\\frac{72}1", "y=", "k = ", "\\leftarrow", "\\rightarrow", "^", "_",
]

STRIP_HAND = [
    "", " ", ".", "0.5", ".5", " .5", "0.50", "1/2", "-1/2", "1/-2", "-1/-2", "01/2", "1/02", "+1/2", "1 /2",
    "1_0/2", "٣/4", "1/2/3", "/", "1/", "/2", "-0/5", "0/0", "a/b", "\\frac12", "\\frac1{72}", "\\frac{72}1",
    "\\frac1", "\\frac", "\\frac\\frac12", "\\fracab", "\\frac{a}{b}", "\\frac{1}2", "\\fracé2", "\\frac😀{3}",
    "\\fracπ", "\\dfrac{3}{4}", "\\tfrac12", "\\sqrt", "\\sqrt2", "\\sqrt{2}", "\\sqrt\\sqrt2", "\\sqrtπ",
    "\\sqrt😀x", "2\\sqrt3+\\sqrt{5}", "\\text{ cm}", "5\\text{ cm}", "5\\text{ cm}\\text{ m}", "5 \\text{cm}",
    "\\left( 1, 2 \\right)", "\\leftarrow", "90^\\circ", "90^{\\circ}", "\\$5", "5\\%", "5\\\\%", "50%", "k=5",
    "k = 5", "xy=5", "xyz=5", "é=5", "😀😀=5", "é😀x=5", "a=b=c", "=5", "5=", "==", "x\\!y", "a\\\\b",
    "a\\\\\\b", "\\\\\\\\", "1\n2", "{.5}", "x .5", "x.5", "\\frac{.5}{2}", "1,000", "  12  ", "\\infty",
    "1" * 4300 + "/7", "1" * 4301 + "/7", "-" + "1" * 4300 + "/7", "7/" + "1" * 4300, "7/" + "1" * 4301,
    "\u00a01/2", "1/2\u00a0", "\\frac{1}{2}.", "\\frac12\\frac", "\\frac{", "\\sqrt{", "\\sqrt}",
]


def strip_or_error(s: str):
    try:
        return {"s": s, "out": math_reward.strip_string(s)}
    except Exception as e:  # noqa: BLE001 - the C++ side must throw exactly where verl raises
        return {"s": s, "error": type(e).__name__}


def math_cases() -> dict:
    strip_inputs = list(STRIP_HAND)
    for _ in range(400):
        strip_inputs.append(draw(ANSWER_FRAGMENTS, 0, 7))
    strip = [strip_or_error(s) for s in strip_inputs]

    # is_equiv: pairs that are equal after normalisation often, and pairs where one side raises.
    equiv = []
    pairs = [("1/2", "\\frac{1}{2}"), ("0.5", "\\frac12"), (".5", "\\frac{1}{2}"), ("\\sqrt", "\\sqrt"),
             ("\\sqrt", "\\sqrt2"), ("\\frac", "\\frac"), ("5\\text{ cm}\\text{ m}", "5\\text{ cm}\\text{ m}"),
             ("5\\text{ cm}\\text{ m}", "5"), ("k=5", "5"), ("xyz=5", "5"), ("10^\\circ", "10"),
             ("\\left(1,2\\right)", "(1, 2)"), ("\\dfrac{3}{4}", "3/4"), ("", ""), ("", " "), ("é=1", "1"),
             ("\\$5", "5"), ("5\\%", "5"), ("x\n", "x"), ("\\frac1{72}", "\\frac{1}{72}")]
    for _ in range(250):
        a = draw(ANSWER_FRAGMENTS, 0, 5)
        b = rng.choice([a, a + " ", " " + a, a.replace("\\frac", "\\dfrac"), draw(ANSWER_FRAGMENTS, 0, 5),
                        "k=" + a, a + "\\text{ cm}", a.replace(" ", "")])
        pairs.append((a, b))
    for a, b in pairs:
        equiv.append({"a": a, "b": b, "out": bool(math_reward.is_equiv(a, b))})

    # Boxed extraction from whole responses.
    boxed_hand = [
        "", "no box", "\\boxed{5}", "\\boxed{5", "\\boxed 5", "\\boxed 5$ and more", "\\boxed 5 \\boxed 6",
        "\\boxed{1} then \\boxed 2$", "\\boxed{\\frac{1}{2}}", "\\boxed{{}}", "\\boxed{}", "\\boxed}{1}",
        "\\boxed}}{1}}", "\\fbox{3}", "\\fbox{3} \\boxed{4}", "\\boxed{4} \\fbox{3}", "\\boxedx{3}", "\\boxed",
        "\\boxed{a}{b}", "$\\boxed{42}$.", "The answer is $\\boxed{\\text{(A)}}$", "\\boxed{é😀}", "\\boxed{\\boxed{1}}",
        "\\boxed {7}", "\\boxed{7} \\boxed {8}", "\\\\boxed{9}", "\\fbox 3", "\\fbox", "x\\boxed{1}\\boxed{2}",
        "\\boxed{1\\}", "\\boxed \\frac12$", "\\boxed $", "\\boxed ", "\\boxed{\n3\n}",
    ]
    boxed_inputs = list(boxed_hand)
    box_frag = ["\\boxed{", "\\boxed ", "\\boxed", "\\fbox{", "{", "}", "}", "$", " ", "1", "x", "\\frac12", "é",
                "😀", "=", "\n", "The answer is "]
    for _ in range(250):
        boxed_inputs.append(draw(box_frag, 0, 9))
    last_boxed = []
    for s in boxed_inputs:
        last_boxed.append({"s": s, "out": math_reward.last_boxed_only_string(s)})
    remove = []
    for s in sorted({x["out"] for x in last_boxed if x["out"] is not None} | {"\\fbox{3}", "\\boxed{", "\\boxed",
                                                                               "x\\boxed 1", "\\boxed{1"}):
        try:
            remove.append({"s": s, "out": math_reward.remove_boxed(s)})
        except Exception as e:  # noqa: BLE001
            remove.append({"s": s, "error": type(e).__name__})

    scores = []
    answers = [x["s"] for x in strip[:160]]
    for s in boxed_inputs:
        for gt in ("1", "\\frac{1}{2}", "7", ""):
            scores.append({"s": s, "gt": gt, "out": float(quiet(math_reward.compute_score, s, gt))})
    for a in answers:
        s = "So the final answer is $\\boxed{" + a + "}$."
        gt = rng.choice([a, "\\frac{1}{2}", "5", a + " ", "k=" + a])
        scores.append({"s": s, "gt": gt, "out": float(quiet(math_reward.compute_score, s, gt))})
    return {"last_boxed_only_string": last_boxed, "remove_boxed": remove, "strip_string": strip,
            "is_equiv": equiv, "compute_score": scores}


# ---------------------------------------------------------------------------------------------------------
# DAPO math (Minerva normalisation)

DAPO_FRAGMENTS = [
    "=", "an ", "a ", ".$", "$", "\\$", "\\ ", " ", "mbox{", "\\text{", "\\textbf{", "\\overline{", "\\boxed{", "}",
    "{", "frac", "\\frac", "sqrt", "\\sqrt", "12", "3", ",", "1,000", ".", "\n", "cm", "units", "degrees",
    "\\text{and}", ",\\text{and}", "\\text{m}", "\\text{s}", "^\\circ", "\\;", ",\\!", "{,}", '"', "\\dots",
    "\\mathrm{th}", "x", "ab", "\u0663", "\u00b2", "\u2460", "\uff13", "\u00a0", "\u3000", "\t", "\u017f", "\u00e9",
    "\U0001F600", "\u4e2d", "\\pi", "-", "(", ")",
]

ANSWER_HAND = [
    "", "Answer: 5", "answer:5", "ANSWER :  5", "Answer : 5\nmore", "Answer:\n5", "Answer:\n\n", "Answer: \n",
    "Answer:", "Answer:  ", "Answer:\u00a0", "Answer:\u00a0\n", "An\u017fwer: 7", "AN\u017fWER:7", "Answers: 5",
    "Answer - 5", "Answer: 3 Answer: 4", "Answer: 3\nAnswer: 4\n", "The answer is 5", "Answer: $\\frac{1}{2}$",
    "Answer: \\boxed{12}", "Answer: 1,000", "Answer: \u0663", "Answer: 12 cm", "Answer:\t\t9", "answer:\u3000x",
    "Answer: x = 5", "Answer: \\text{(A)}", "Answer: $5$ and $6$", "x" * 290 + "Answer: 5", "Answer: 5" + "y" * 295,
    "Answer: 5" + "\u00e9" * 292, "Answer: 5\n" + "\U0001F600" * 290,
]


def dapo_cases() -> dict:
    norm_inputs = [a for a in STRIP_HAND if len(a) < 200] + [x[len("Answer: "):] for x in ANSWER_HAND if x.startswith("Answer: ")]
    for _ in range(400):
        norm_inputs.append(draw(DAPO_FRAGMENTS, 0, 8))
    normalize = [{"s": s, "out": math_dapo.normalize_final_answer(s)} for s in norm_inputs]
    responses = list(ANSWER_HAND)
    for _ in range(250):
        responses.append(draw(["Answer", "answer", "ANSWER", "An\u017fwer", ":", " ", "\n", "\u00a0", "5", "12",
                               "\\frac12", "$", "\\boxed{", "}", "x", "=", "The "], 0, 10))
    scores = []
    for i, s in enumerate(responses):
        # Ground truths that match sometimes: what each mode extracts (the prediction, the boxed text).
        truths = {"5", "12", "\\frac{1}{2}", math_dapo.compute_score(s, "")["pred"]}
        boxed = math_dapo.compute_score(s, "", strict_box_verify=True)["pred"]
        if boxed is not None:
            truths.add(boxed)
        for gt in sorted(truths):
            for strict in (False, True):
                r = math_dapo.compute_score(s, gt, strict_box_verify=strict)
                scores.append({"i": i, "gt": gt, "strict_box_verify": strict, "score": r["score"],
                               "acc": bool(r["acc"]), "pred": r["pred"]})
    # compute_score cases name their response by its index `i` into `responses`.
    return {"normalize_final_answer": normalize, "responses": responses, "compute_score": scores}


# ---------------------------------------------------------------------------------------------------------
# default_compute_score

def default_cases() -> list:
    out = []
    sources = ["openai/gsm8k", "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"]
    responses = ["#### 5", "x #### 1,234", "\\boxed{5}", "\\boxed{\\frac12}", "the answer is 5", "", "#### 0.5",
                 "$\\boxed{0.5}$ #### 5"]
    truths = ["5", "1234", "\\frac{1}{2}", "0.5", ""]
    for ds in sources:
        for s in responses:
            for gt in truths:
                out.append({"data_source": ds, "s": s, "gt": gt,
                            "out": float(quiet(default_compute_score, ds, s, gt))})
    for ds in ["math_dapo", "math", "math_dapo_reasoning", "aime", "aime2024"]:
        for s in ["Answer: 5", "Answer: \\frac12", "#### 5", ""]:
            for gt in ["5", "\\frac{1}{2}"]:
                r = default_compute_score(ds, s, gt)
                out.append({"data_source": ds, "s": s, "gt": gt, "out": float(r["score"]), "acc": bool(r["acc"])})
    for ds in ["", "gsm8k", "openai/GSM8K", "unknown_source", "AIME", "Math"]:
        try:
            default_compute_score(ds, "#### 5", "5")
            raise SystemExit(f"verl scored unknown data_source {ds!r}")
        except NotImplementedError:
            out.append({"data_source": ds, "s": "#### 5", "gt": "5", "error": "NotImplementedError"})
    return out


def write(name: str, doc: dict) -> None:
    doc = {"reference": f"verl {VERL_VERSION} (PyPI), verl/utils/reward_score/",
           "generator": "tests/golden/rewards/make_golden.py", **doc}
    (HERE / name).write_text(json.dumps(doc, ensure_ascii=True, indent=0) + "\n")


if __name__ == "__main__":
    write("gsm8k.json", gsm8k_cases())
    write("math.json", math_cases())
    write("math_dapo.json", dapo_cases())
    write("default_compute_score.json", {"cases": default_cases()})
    print("wrote", ", ".join(str(HERE / n) for n in ("gsm8k.json", "math.json", "math_dapo.json",
                                                     "default_compute_score.json")))
