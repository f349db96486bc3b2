from stream.simulator.cli import main

raise SystemExit(main())
