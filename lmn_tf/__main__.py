import sys

from lmn_tf.cli import main

sys.exit(main())
