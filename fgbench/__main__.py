from fgbench.cli import main

raise SystemExit(main())
