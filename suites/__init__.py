"""One module per milestone paper. Each registers itself with `milestones.harness.registry.register_suite`;
`milestones.harness.registry.load_suites()` imports every module here. Modules starting with "_" are helpers."""
