"""Data order of training and validation."""

from discdiff.training.sampler import ResumableSampler, ValidationSampler


def test_training_order_changes_with_the_epoch_and_skips_after_a_restart():
    sampler = ResumableSampler(50, seed=3, batch_size=5)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    sampler.skip(2)
    assert list(sampler) == second[10:]


def test_validation_reads_the_same_shuffled_sample_at_every_epoch():
    """A split stored class by class (items 0..49 one class, 50..99 the other) must not be read
    as its first items when validation is limited to a few batches."""
    sampler = ValidationSampler(100, seed=1)
    order = list(sampler)
    sampler.set_epoch(7)
    assert list(sampler) == order and sorted(order) == list(range(100))
    first_batches = order[:20]
    assert any(i < 50 for i in first_batches) and any(i >= 50 for i in first_batches)


def test_validation_split_across_ranks_without_overlap():
    parts = [list(ValidationSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert not set(parts[0]) & set(parts[1]) and len(parts[0]) == len(parts[1]) == 5
