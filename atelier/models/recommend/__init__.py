"""Recommendations: two-tower retrieval, the listwise ranking stage, and every baseline they face."""
