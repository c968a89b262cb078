import pytest

from san_mm.models.utils import ScaleEncoder, validate_sizes


def test_official_encodings():
    encoder = ScaleEncoder()
    # rounding to 10 decimals absorbs float64 rounding (~1e-16) and nothing
    # else: neighbouring encodings differ by 0.05
    table = {r: round(encoder.encode(r), 10) for r in (224, 192, 160, 128, 96)}
    assert table == {224: 0.7, 192: 0.6, 160: 0.5, 128: 0.4, 96: 0.3}
    # ideal inference encodings of the paper's unseen sizes
    assert [round(encoder.encode(r), 10) for r in (208, 176, 144, 112)] == \
        [0.65, 0.55, 0.45, 0.35]


def test_configurable_encoding():
    encoder = ScaleEncoder([28, 24, 20], max_encoding=1.0, reference_size=32)
    assert encoder.encode(32) == 1.0
    # float64 (~1e-16) vs approx's default rel 1e-6; neighbours differ by 0.125
    assert encoder.encode(24) == pytest.approx(0.75)
    # default reference is the largest training size, whatever the order
    assert ScaleEncoder([12, 28, 20]).encode(28) == pytest.approx(0.7)


def test_sizes_sorted_largest_first_and_validated():
    assert validate_sizes([96, 224, 160]) == (224, 160, 96)
    assert validate_sizes(64) == (64, )
    with pytest.raises(ValueError, match=r'\[\]'):
        validate_sizes([])
    with pytest.raises(ValueError, match='-3'):
        validate_sizes([224, -3])
    with pytest.raises(ValueError, match='0'):
        validate_sizes([0])
    with pytest.raises(ValueError, match=r'\[160\] more than once'):
        validate_sizes([224, 160, 160])
    with pytest.raises(TypeError, match='160.5'):
        validate_sizes([224, 160.5])
    with pytest.raises(TypeError, match='True'):
        validate_sizes([True])
    with pytest.raises(TypeError, match="'224'"):
        validate_sizes('224')
    with pytest.raises(ValueError, match='max_encoding'):
        ScaleEncoder(max_encoding=0)


def test_nearest_and_neighbours():
    encoder = ScaleEncoder()
    assert encoder.nearest(200) == 192
    assert encoder.nearest(208) == 224  # ties go to the larger size
    assert encoder.nearest(500) == 224 and encoder.nearest(10) == 96
    assert encoder.neighbours(208) == (192, 224, 0.5)
    assert encoder.neighbours(168) == (160, 192, 0.25)
    assert encoder.neighbours(160) == (160, 160, 1.0)
    assert encoder.neighbours(300) == (224, 224, 1.0)
    assert encoder.neighbours(64) == (96, 96, 1.0)
    assert encoder.in_range(100) and not encoder.in_range(95)
    assert encoder.index(224) == 0 and encoder.index(96) == 4
    with pytest.raises(ValueError, match='200 is not a training size'):
        encoder.index(200)
