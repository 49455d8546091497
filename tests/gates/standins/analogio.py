class AnalogIn:
    reference_voltage = 3.3

    def __init__(self, pin):
        self.pin = pin
        self.value = int(3.9 / 2 / 3.3 * 65535)  # 3.9 V through the 1:2 divider

    def deinit(self):
        pass
