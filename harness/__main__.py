from milestones.harness.cli import main

raise SystemExit(main())
