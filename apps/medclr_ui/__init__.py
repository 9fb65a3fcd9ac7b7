"""Building blocks of the medclr Streamlit app: session state, the X-ray viewer, the ECG paper plot, score views.

Everything here imports :mod:`medclr.inference` only (plus Streamlit, numpy, Pillow and matplotlib).
"""
