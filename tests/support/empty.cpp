// Intentionally empty: the translation unit behind verl_syntax_flags_probe (cmake/VerlTesting.cmake).
