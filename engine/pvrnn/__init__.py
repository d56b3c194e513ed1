"""PV-RNN (Ahmadi & Tani 2019): model, training, error regression, sequence data."""
