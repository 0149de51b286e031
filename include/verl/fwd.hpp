#pragma once
//! \file
//! Forward declarations of verl-cpp's public templates and types, for headers that only name them.
//! Cheap to include: no LibTorch, no Boost (field.hpp is standard-library only).

#include "verl/core/field.hpp"

namespace verl {

template <FieldTag... Fields>
class Batch;
struct ItemInfo;
struct PackedLayout;

class Error;
class ShapeError;
class ConfigError;
class InputError;

}  // namespace verl
