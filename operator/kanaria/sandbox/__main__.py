"""``python -m kanaria.sandbox`` runs the demo."""

import sys

from kanaria.sandbox.demo import main

sys.exit(main())
