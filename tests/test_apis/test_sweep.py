from san_mm.apis.sweep import default_sweep_sizes


def test_default_sweep_follows_the_training_sizes():
    # the Fashion-MNIST sizes: every training size, the sizes between them
    # and half a step beyond each end
    assert default_sweep_sizes([12, 28, 20, 16, 24]) == [
        30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10]
    assert default_sweep_sizes([224, 192, 160, 128, 96]) == [
        240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80]
    assert default_sweep_sizes([32]) == [32]
