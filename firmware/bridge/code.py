# LoRa bridge firmware entry point: radio <-> USB serial (usb_cdc.data) for the gateway.
import hal_bridge

from panicbridge.bridge import main

main(hal_bridge.BridgeHal())
