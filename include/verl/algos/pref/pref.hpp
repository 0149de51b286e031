#pragma once
//! \file
//! verl::pref: preference-optimisation and SFT losses ported from Hugging Face TRL (see docs/algorithms.md):
//! dpo_loss (every pure DPO-family loss type), kto_loss, cpo_loss / simpo_loss, odds_ratio_loss (ORPO) and
//! sft_nll_loss. Each header is self-contained; this one includes them all.

#include "verl/algos/pref/dpo.hpp"
#include "verl/algos/pref/kto.hpp"
#include "verl/algos/pref/orpo.hpp"
#include "verl/algos/pref/sft.hpp"
#include "verl/algos/pref/simpo.hpp"
