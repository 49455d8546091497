import hwlink


class Pull:
    UP = 1
    DOWN = 2


class Direction:
    INPUT = 0
    OUTPUT = 1


class DigitalInOut:
    def __init__(self, pin):
        self.pin = pin
        self.direction = Direction.INPUT
        self.pull = None

    def switch_to_input(self, pull=None):
        self.direction = Direction.INPUT
        self.pull = pull

    def switch_to_output(self, value=False, drive_mode=None):
        self.direction = Direction.OUTPUT
        self.value = value

    @property
    def value(self):
        if self.direction == Direction.OUTPUT:
            return bool(self.pin.output)
        hwlink.pump()  # the level the outside world set by now
        return self.pin.level

    @value.setter
    def value(self, v):
        self.pin.set_output(bool(v))

    def deinit(self):
        pass
