"""Spoken-word recognition (keyword spotting) pieces behind `fastgru listen`.

- :mod:`.synth`: the built-in words, synthesised reproducibly with Debian's espeak-ng (several English
  accents, voice variants, speeds and pitches) into a cache folder with a manifest. Synthetic speech,
  not recorded speech.
- :mod:`.audio`: reading WAV files (mono mix, sample-rate checks and resampling) and a labelled folder
  (one sub-folder per word; the speaker is the file name up to its first underscore).
- :mod:`.split`: held-out speakers: train / validation / test parts that share no voice.
- :mod:`.features`: log-mel features (librosa filter bank), for a whole signal or chunk by chunk.
- :mod:`.listener`: a trained keyword spotter (GRU + feature settings + normalisation + class names):
  save / load, batch prediction, and streaming prediction with the GRU state carried across frames.

librosa and soundfile come with the ``speech`` extra (``pip install fastgru[speech]``).

Import the submodules themselves (``from fastgru.apps.speech.features import logmel``): this package imports
nothing on its own, so the synthesiser works without librosa installed.
"""
