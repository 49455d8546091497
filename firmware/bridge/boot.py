# The gateway talks to the bridge on the second USB serial channel (usb_cdc.data).
import usb_cdc

usb_cdc.enable(console=True, data=True)
