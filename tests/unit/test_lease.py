"""The lease arithmetic, on a fake clock."""

from __future__ import annotations

import pytest

from election_daemon.library.lease import LEASE_FRACTION, Lease


def test_lease_is_two_thirds_of_the_timeout_from_the_send_time() -> None:
    lease = Lease(3.0)
    assert lease.length_s == pytest.approx(2.0)
    assert not lease.valid(0.0)
    assert lease.renew(10.0)
    assert lease.expires_at == pytest.approx(12.0)
    assert lease.valid(11.999)
    assert not lease.valid(12.0)
    assert lease.remaining_s(11.5) == pytest.approx(0.5)
    assert lease.remaining_s(13.0) == 0.0


def test_an_older_answer_never_shortens_the_lease() -> None:
    lease = Lease(3.0)
    lease.renew(10.0)
    assert not lease.renew(9.0)
    assert lease.expires_at == pytest.approx(12.0)
    assert lease.renew(10.5)
    assert lease.expires_at == pytest.approx(12.5)


def test_negotiated_timeout_recomputes_the_lease() -> None:
    lease = Lease(10.0)
    lease.renew(100.0)
    lease.set_session_timeout(3.0)
    assert lease.expires_at == pytest.approx(100.0 + LEASE_FRACTION * 3.0)


def test_invalidate_forgets_renewals() -> None:
    lease = Lease(3.0)
    lease.renew(10.0)
    lease.invalidate()
    assert not lease.valid(10.0)
    assert lease.expires_at is None


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_a_non_positive_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="session_timeout_s"):
        Lease(timeout)
