from fgvc.cli import main

raise SystemExit(main())
