import sys

from rewire.pipeline.stage import main

sys.exit(main())
