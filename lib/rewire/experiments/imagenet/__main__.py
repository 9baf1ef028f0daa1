"""``python -m rewire.experiments.imagenet``: the ImageNet stage (:mod:`rewire.experiments.imagenet.stage`)."""

import sys

from rewire.experiments.imagenet.stage import main

sys.exit(main())
