# Runs once at power-on, before USB: console only (the data channel is for the bridge).
import usb_cdc

usb_cdc.enable(console=True, data=False)
