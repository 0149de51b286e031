#!/usr/bin/env bash
# Collects, on a development machine with the Debian packages of scripts/dependencies.env installed, the
# headers, CMake package files and shared libraries that a build needs beyond LibTorch and the compilers,
# into <repo>/.devsys/usr (about 11 MB, ignored by git). A lent GPU machine has CUDA LibTorch, cmake,
# ninja and nvcc but no package registry: the device tool carries .devsys there and scripts/gpu_check.sh
# builds against it. Boost is cut down to the headers Boost.Hana includes.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$repo/.devsys
grep -qx '/.devsys/' "$repo/.git/info/exclude" 2>/dev/null || echo '/.devsys/' >>"$repo/.git/info/exclude"
rm -rf "$dest" && mkdir -p "$dest"
lib=usr/lib/x86_64-linux-gnu
boost=$(echo '#include <boost/hana.hpp>' | g++ -std=c++20 -M -x c++ - | tr ' \\' '\n\n' | grep '^/usr/include/boost/' |
        sed 's|^/||' | sort -u)
cd /
# shellcheck disable=SC2086 # word splitting of the file lists is intended
tar cf - $boost usr/include/range usr/include/meta usr/include/concepts usr/include/std usr/include/nlohmann \
  usr/include/catch2 usr/include/gloo usr/include/benchmark usr/include/pcre2.h usr/include/sentencepiece_*.h \
  $lib/cmake/Boost-1.74.0 $lib/cmake/BoostDetectToolset-1.74.0.cmake $lib/cmake/boost_headers-1.74.0 \
  $lib/cmake/benchmark usr/lib/cmake/Catch2 usr/lib/libCatch2*.a usr/lib/cmake/range-v3 usr/share/cmake/nlohmann_json \
  $lib/pkgconfig/libpcre2-8.pc $lib/pkgconfig/sentencepiece.pc $lib/libpcre2-8.so* $lib/libsentencepiece.so* \
  $lib/libbenchmark.so* $lib/libbenchmark_main.a usr/bin/pkgconf $lib/libpkgconf.so* | tar xf - -C "$dest"
du -sh "$dest"
