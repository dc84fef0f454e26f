"""One module per milestone paper. Each registers itself with `harness.registry.register_suite`;
`harness.registry.load_suites()` imports every module here. Modules starting with "_" are helpers."""
