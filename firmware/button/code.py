# Panic button firmware entry point. All logic lives in lib/panicbutton; hal_board.py is
# the only place that touches hardware. docs/firmware.md explains patterns and LED codes.
import hal_board

from panicbutton.app import main

main(hal_board.BoardHal())
