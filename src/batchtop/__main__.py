from batchtop.cli import main

raise SystemExit(main())
