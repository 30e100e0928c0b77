"""The feature pipeline's windows, checked on events small enough to count by hand."""

import datetime as dt

import numpy as np
import pandas as pd

from atelier.features.pipeline import client_activity, windowed_aggregates

D = 20_000  # an arbitrary day number (days since epoch)


def test_window_counts_at_event_days_and_expiries():
    # One client, purchases on days D and D+10 (amounts 100 and 50), a 30-day window.
    key = np.array([0, 0])
    day = np.array([D, D + 10])
    w = windowed_aggregates(key, day, np.array(["purchase", "purchase"]), np.array([100.0, 50.0]),
                            {"n": ("purchase", "count", 30), "spend": ("purchase", "amount", 30)})
    got = {int(d - D): (n, s) for d, n, s in zip(w.day, w.values["n"], w.values["spend"])}
    # Change points: the two purchase days, and the days each leaves the window (D+30, D+40).
    assert got == {0: (1, 100.0), 10: (2, 150.0), 30: (1, 50.0), 40: (0, 0.0)}


def test_windows_only_count_their_event_type_and_key():
    key = np.array([0, 1, 0])
    day = np.array([D, D, D + 1])
    w = windowed_aggregates(key, day, np.array(["view", "purchase", "purchase"]), np.zeros(3), {"p": ("purchase", "count", 7)})
    got = {(int(k), int(d - D)): v for k, d, v in zip(w.key, w.day, w.values["p"])}
    # client 0: the view on D changes nothing for purchases (0), its purchase on D+1 counts;
    # client 1: its purchase on D counts; both expire 7 days later.
    assert got == {(0, 0): 0, (0, 1): 1, (0, 8): 0, (1, 0): 1, (1, 7): 0}


def test_windows_match_counting_every_event_on_random_data():
    # The vectorized prefix sums against the definition, counted event by event: at each change
    # point (an event day, or the day an event leaves a window), a window of w days at day t holds
    # the events of its type on days t-w+1 .. t. Several keys, types, widths and weighted rows.
    rng = np.random.default_rng(3)
    n = 400
    key, day = rng.integers(0, 7, n), D + rng.integers(0, 120, n)
    etype = rng.choice(np.array(["purchase", "view", "return"], object), n)
    amount, count = np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 100), rng.integers(1, 4, n).astype(float)
    windows = {"p7": ("purchase", "count", 7), "p30": ("purchase", "count", 30), "s30": ("purchase", "amount", 30), "v90": ("view", "count", 90)}
    w = windowed_aggregates(key, day, etype, amount, windows, count=count)
    expected_points = set(zip(key.tolist(), day.tolist()))
    for ev, _, width in windows.values():
        expected_points |= {(k, d + width) for k, d, t in zip(key.tolist(), day.tolist(), etype) if t == ev}
    assert list(zip(w.key.tolist(), w.day.tolist())) == sorted(expected_points)
    for i, (k, t) in enumerate(zip(w.key, w.day)):
        for name, (ev, what, width) in windows.items():
            inside = (key == k) & (etype == ev) & (day > t - width) & (day <= t)
            want = count[inside].sum() if what == "count" else np.nan_to_num(amount[inside]).sum()
            assert np.isclose(w.values[name][i], want), (name, k, t)


def _frame(rows):
    df = pd.DataFrame(rows, columns=["client_id", "event_type", "ts", "amount", "maison", "category"])
    df["event_timestamp"] = pd.to_datetime(df["ts"], utc=True)
    df["ts"] = df["event_timestamp"].astype("int64") // 10**9
    df["day"] = df["ts"] // 86400
    df["product_id"] = "P1"
    return df


def test_favourites_and_last_purchase_as_of_each_row():
    df = _frame([
        ("EU1", "view", "2025-01-01T10:00:00Z", None, "a", "bags"),
        ("EU1", "view", "2025-01-01T11:00:00Z", None, "a", "bags"),
        ("EU1", "purchase", "2025-01-03T10:00:00Z", 900.0, "b", "watches"),  # weight 5 > 2 views of a
    ])
    t = client_activity(df).to_pandas().set_index("event_timestamp")
    jan1 = t.loc[pd.Timestamp("2025-01-01T23:59:59Z")]
    jan3 = t.loc[pd.Timestamp("2025-01-03T23:59:59Z")]
    assert (jan1.favourite_maison, jan1.purchases_30d) == ("a", 0) and pd.isna(jan1.last_purchase_at)
    assert (jan3.favourite_maison, jan3.favourite_category, jan3.purchases_30d, jan3.spend_30d) == ("b", "watches", 1, 900.0)
    assert jan3.last_purchase_at == pd.Timestamp("2025-01-03T10:00:00Z")
    assert list(jan1.purchased_products) == [] and list(jan3.purchased_products) == ["P1"]
    # Rows are stamped at the end of their day: visible only once the day is complete.
    assert all(ts.time() == dt.time(23, 59, 59) for ts in t.index)
