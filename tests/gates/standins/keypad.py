class Event:
    def __init__(self, key_number=0, pressed=True):
        self.key_number = key_number
        self.pressed = pressed
        self.released = not pressed
        self.timestamp = 0


class _Events:
    def get(self):
        return None

    def get_into(self, event):
        return False

    def clear(self):
        pass


class Keys:
    def __init__(self, pins, value_when_pressed=False, pull=True, interval=0.02,
                 max_events=64):
        self.pins = pins
        self.events = _Events()

    def deinit(self):
        pass
