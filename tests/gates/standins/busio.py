import board


def SPI(clock=None, MOSI=None, MISO=None):
    return board.SPI()


def I2C(scl=None, sda=None, frequency=100000):
    return board.I2C()
