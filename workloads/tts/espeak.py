"""Speech with exact phoneme timings from libespeak-ng (Debian `libespeak-ng1`), through ctypes.

`espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, PHONEME_EVENTS | PHONEME_IPA)` makes the
library hand a synth callback each chunk of 22,050 Hz 16-bit mono audio together with the
events in it; phoneme events carry the phoneme's IPA name and its start in the audio (ms).
Phonemes without a name are pauses. The structures follow espeak-ng's `speak_lib.h`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

import numpy as np

from algobench.errors import UserError

# speak_lib.h: espeak_AUDIO_OUTPUT, initialize options, espeak_EVENT_TYPE, position and char types
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS, INITIALIZE_PHONEME_IPA, INITIALIZE_DONT_EXIT = 0x0001, 0x0002, 0x8000
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
POS_CHARACTER, CHARS_UTF8 = 1, 1
PARAM_RATE = 1  # words per minute
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phone:
    name: str  # IPA; "" for a pause
    start_sample: int
    word: int  # index into Speech.words of the word it belongs to, -1 before the first word


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # int16, mono
    sample_rate_hz: int
    phones: list[Phone]  # in time order
    words: list[str]


class Espeak:
    """The process-wide espeak-ng synthesizer (the library keeps global state: get it with `espeak()`)."""

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError:
            raise UserError("the tts smoke data is synthesized with espeak-ng: apt-get install espeak-ng "
                            "libespeak-ng1") from None
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate_hz = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
            INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT)
        if self.sample_rate_hz <= 0:
            raise UserError("espeak-ng failed to initialize (is espeak-ng-data installed?)")
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voice = voice
        if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise UserError(f"espeak-ng has no voice '{voice}' (see: espeak-ng --voices)")
        self.lib.espeak_SetParameter(PARAM_RATE, rate_wpm, 0)

    def _on_audio(self, wav, n_samples: int, events) -> int:
        if n_samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, 2 * n_samples))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace") if ev.type == EVENT_PHONEME else ""
            self._events.append((ev.type, ev.audio_position, ev.text_position, ev.length, name))
            i += 1
        return 0  # continue synthesis

    def synthesize(self, text: str) -> Speech:
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} on {text!r}")
        self.lib.espeak_Synchronize()
        samples = np.frombuffer(b"".join(self._chunks), dtype="<i2").copy()
        phones: list[Phone] = []
        words: list[str] = []
        for kind, ms, pos, length, name in self._events:
            if kind == EVENT_WORD:  # text positions count characters from 1
                words.append(text[pos - 1:pos - 1 + length])
            elif kind == EVENT_PHONEME:
                start = min(round(ms * self.sample_rate_hz / 1000), len(samples))
                phones.append(Phone(name=name, start_sample=start, word=len(words) - 1))
        return Speech(samples=samples, sample_rate_hz=self.sample_rate_hz, phones=phones, words=words)


_INSTANCE: Espeak | None = None


def espeak(voice: str = "en-us") -> Espeak:
    """The one synthesizer of this process, set to `voice`."""
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = Espeak(voice)
    elif _INSTANCE.voice != voice:
        if _INSTANCE.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise UserError(f"espeak-ng has no voice '{voice}' (see: espeak-ng --voices)")
        _INSTANCE.voice = voice
    return _INSTANCE
