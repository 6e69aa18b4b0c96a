"""placeholder"""
def accelerate(model, engine="auto", undo=False):
    raise NotImplementedError
