"""Project test configuration: the Hypothesis profile (see spikenm.conformance.profiles)."""

from spikenm.conformance.profiles import load_selected_profile

load_selected_profile()
