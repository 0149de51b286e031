// The precompiled header of the header check (cmake/VerlHeaderCheck.cmake): the C++ standard library and
// <ATen/core/Tensor.h>, nothing that a verl header could forget without harm to its users. Keep it that way.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>
