#pragma once
//! \file
//! The umbrella header, for examples and user programs: everything public in verl-cpp.
//! Library headers never include it; include the specific header when compile time matters.

#include "verl/version.hpp"

#include "verl/core/batch.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/field.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/item_info.hpp"
#include "verl/core/model_io.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/packing.hpp"
#include "verl/core/partition.hpp"

#include "verl/concepts/concepts.hpp"

#include "verl/dist/single_process_communicator.hpp"
