"""Critical-path attribution: overlapping (PDL) kernels, idle gaps, a kernel inside another."""

from clsa.bench.timeline import critical_path


def test_charges_add_up_to_the_span_with_overlap_and_gaps():
    # a: 0-10; b starts at 8 (PDL, overlaps a) and ends at 15; gap 15-17; c 17-20; d inside c
    run = [("a", 0.0, 10.0), ("b", 8.0, 15.0), ("c", 17.0, 20.0), ("d", 18.0, 19.0)]
    charges, idle = critical_path(run)
    assert charges == [10.0, 5.0, 3.0, 0.0]
    assert idle == 2.0
    assert sum(charges) + idle == run[-2][2] - run[0][1]


def test_empty_timeline():
    assert critical_path([]) == ([], 0.0)
