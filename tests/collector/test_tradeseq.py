"""Trade-id sequencing (collector.tradeseq): one odd id can never silence a stream."""

from __future__ import annotations

from collector.tradeseq import Duplicate, Gap, Reset, Stray, TradeSequence, Write


def written(seq: TradeSequence[int], ids: list[int]) -> tuple[list[int], list[object]]:
    """Feed ids (the item is the id itself); returns (ids written, the other verdicts)."""
    rows: list[int] = []
    other: list[object] = []
    for i, tid in enumerate(ids):
        for v in seq.feed(tid, tid, float(i)):
            if isinstance(v, Write):
                rows.append(v.trade_id)
            else:
                other.append(v)
    return rows, other


class TestContiguous:
    def test_natural_successors_are_written_at_once(self) -> None:
        """1000, 1001, ... each written as it comes; nothing else recorded."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True)

        rows, other = written(seq, list(range(1000, 1010)))

        assert rows == list(range(1000, 1010))
        assert other == []

    def test_replayed_ids_are_duplicates(self) -> None:
        """A reconnect that replays the last trades writes nothing twice."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True)

        rows, other = written(seq, [1, 2, 3, 2, 3, 4])

        assert rows == [1, 2, 3, 4]
        assert other == [Duplicate(2, 3), Duplicate(3, 3)]

    def test_a_stray_id_far_ahead_does_not_silence_the_stream(self) -> None:
        """10**12 in the middle of 1000.. is a stray: no row, and every later trade is kept."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True)

        rows, other = written(seq, [1000, 1001, 10**12, 1002, 1003])

        assert rows == [1000, 1001, 1002, 1003]
        assert other == [Stray(10**12, 1001)]

    def test_a_stray_id_behind_is_not_written(self) -> None:
        """An id from another symbol (far below) followed by the sequence: a stray."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True, window=100)

        rows, other = written(seq, [5000, 5001, 7, 5002])

        assert rows == [5000, 5001, 5002]
        assert other == [Stray(7, 5001)]

    def test_a_confirmed_jump_is_a_gap_of_the_missing_ids(self) -> None:
        """1002 missing: 1003 is held until 1004 confirms it, then a gap 1002..1002."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True)

        rows, other = written(seq, [1000, 1001, 1003, 1004])

        assert rows == [1000, 1001, 1003, 1004]
        assert other == [Gap(1002, 1003)]
        assert Gap(1002, 1003).size == 1

    def test_a_new_id_space_is_a_reset_not_a_silence(self) -> None:
        """After trade ids (~3e9), aggregate ids (~1e9): two in a row start a new sequence."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True, last=3_000_000_000)

        rows, other = written(seq, [1_000_000, 1_000_001, 1_000_002])

        assert rows == [1_000_000, 1_000_001, 1_000_002]
        assert other == [Reset(3_000_000_000, 1_000_000)]

    def test_a_huge_confirmed_jump_forward_is_a_reset(self) -> None:
        """A jump of more than MAX_GAP ids is another id space, not a gap of billions."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True, last=1_000)

        rows, other = written(seq, [5_000_000_000, 5_000_000_001])

        assert rows == [5_000_000_000, 5_000_000_001]
        assert other == [Reset(1_000, 5_000_000_000)]

    def test_two_strays_in_a_row(self) -> None:
        """A stray replaced by another stray: both recorded, the sequence goes on."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True)

        rows, other = written(seq, [10, 11, 900, 50_000_000, 12])

        assert rows == [10, 11, 12]
        assert other == [Stray(900, 11), Stray(50_000_000, 11)]

    def test_a_held_trade_is_accepted_after_max_pending(self) -> None:
        """The first trade after a reconnect on a quiet stream is written after a while."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True, last=100, max_pending_s=2.0)

        assert seq.feed(150, 150, 10.0) == []
        assert seq.resolve(11.0) == []
        verdicts = seq.resolve(12.0)

        assert verdicts == [Gap(101, 150), Write(150, 150)]
        assert seq.last == 150

    def test_heartbeat_skip_moves_the_sequence_on(self) -> None:
        """Trades the exchange says happened but never came: a gap, then 8 is natural."""
        seq: TradeSequence[int] = TradeSequence(contiguous=True, last=5)

        gap = seq.skip_to(7)
        rows, other = written(seq, [8])

        assert gap == Gap(6, 8)
        assert (rows, other) == ([8], [])


class TestGlobalIds:
    def test_increasing_ids_with_holes_are_natural(self) -> None:
        """Bitstamp/Bitfinex ids are global: holes are normal, nothing recorded."""
        seq: TradeSequence[int] = TradeSequence(contiguous=False, window=1000)

        rows, other = written(seq, [100, 130, 131, 500])

        assert rows == [100, 130, 131, 500]
        assert other == []

    def test_a_stray_far_ahead_does_not_poison(self) -> None:
        """An id beyond the window is held; the next ordinary id shows it was stray."""
        seq: TradeSequence[int] = TradeSequence(contiguous=False, window=1000)

        rows, other = written(seq, [100, 10**15, 140, 150])

        assert rows == [100, 140, 150]
        assert other == [Stray(10**15, 100)]
