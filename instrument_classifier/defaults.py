"""Defaults named once: paths, the audio format of a clip, the default dataset.

Every script takes these as its argparse defaults; nothing else in the code
hard-codes a path.
"""

from pathlib import Path

# The repository root: the folder holding the stage scripts.
REPO_DIR = Path(__file__).resolve().parent.parent
# Inputs that ship with the repository.
DATA_DIR = REPO_DIR / "data"
# Everything generated lives here (git-ignored), one folder per dataset.
WORKING_DIR = DATA_DIR / "working"
# The General MIDI Level 1 patch map with families and playable ranges.
INSTRUMENTS_CSV = REPO_DIR / "instruments.csv"

# The SoundFont catalogue: name, file, Debian package, licence and lineage of
# every GM font the project trains on (read by instrument_classifier.soundfonts).
SOUNDFONTS_CSV = DATA_DIR / "soundfonts.csv"
# Decoded copies of compressed (.sf3) SoundFonts, written on first use (instrument_classifier.sf3).
SOUNDFONT_CACHE_DIR = DATA_DIR / "cache" / "soundfonts"
# JAX, a second Keras backend for the backend tests and benchmark, beside .venv rather than in it (the Makefile says
# why; `make test` installs it).
JAX_BACKEND_DIR = REPO_DIR / ".venv" / "jax-backend"
# Where the default SoundFont's path is stored (the seed's convention; `~` expanded when read).
DEFAULT_SOUNDFONT_FILE = Path("~/.fluidsynth/default_sound_font")
# Fallbacks when that file is absent: Debian's fluid-soundfont-gm (then the
# small GM font that the pretty_midi wheel ships, found at run time).
SYSTEM_SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),)

# The dataset `make pipeline` builds and every later stage reads by default
# (10,000 clips of every font of the catalogue, --variation realistic).
DEFAULT_DATASET_NAME = "multi-font-10000"
DEFAULT_DATASET_DIR = WORKING_DIR / DEFAULT_DATASET_NAME
# The seed's single-font experiment (`make single-font`): 2000 clean clips of FluidR3_GM.
SINGLE_FONT_DATASET_DIR = WORKING_DIR / "single-notes-2000"

# A clip: 2.0 s of 44.1 kHz mono float audio, one note held for 1.0 s from t = 0.
SAMPLE_RATE = 44_100
CLIP_SECONDS = 2.0
NOTE_SECONDS = 1.0
CLIP_SAMPLES = round(SAMPLE_RATE * CLIP_SECONDS)  # 88200

# The original's seven harmonic families (GM programs 0-7, 16-31, 40-47, 56-79).
DEFAULT_FAMILIES = ("piano", "organ", "guitar", "strings", "brass", "reed", "pipe")

# The random seed of every stage unless told otherwise: the clips, the split, the training.
DEFAULT_SEED = 42

# Clips per feature-and-network batch when predicting many files: large enough
# to amortise the network call, small enough (32 x 88,200 samples) to keep memory flat.
PREDICT_BATCH_SIZE = 32
# Chromagrams per network call when scoring a dataset (a trained model's own splits, evaluate.py --dataset).
SCORING_BATCH_SIZE = 256
# Request threads of the web app's waitress server (predict_webapp.py --threads), and the most it takes
# (each holds a thread's stack; more than the server's connections would wait for nothing).
SERVER_THREADS = 8
MAX_SERVER_THREADS = 256
