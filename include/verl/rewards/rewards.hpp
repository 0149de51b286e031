#pragma once
//! \file
//! All of verl::rewards: verl 0.7.1's GSM8K, MATH and DAPO-math rules and default_compute_score, weighted
//! combinations of rewards, and the reward manager that writes token_level_scores. See docs/rewards.md.

#include "verl/rewards/combine.hpp"
#include "verl/rewards/default_compute_score.hpp"
#include "verl/rewards/gsm8k.hpp"
#include "verl/rewards/math_answer.hpp"
#include "verl/rewards/math_dapo.hpp"
#include "verl/rewards/reward_manager.hpp"
#include "verl/rewards/text.hpp"
