from insr_hpc.cli import main

raise SystemExit(main())
