from snnmetrics.cli import main

raise SystemExit(main())
