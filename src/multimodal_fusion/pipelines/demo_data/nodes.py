"""Nodes of the ``demo_data`` pipeline: an offline, deterministic generator of a
customer-service dataset where each contact has a typed message, a voice message
and an intent.

:func:`plan_contacts` makes every random choice with one
``numpy.random.default_rng(seed)`` and writes them down, one row per contact. The
other nodes only render that plan into the raw-data contract (GUIDE §1): the typed
texts, the labels, the voice clips (eSpeak NG speech plus seeded background noise)
and a manifest of how each contact was made.

By design neither modality suffices alone: in one share of contacts the typed text
is a vague note and only the voice message names the intent, in another, disjoint,
share the voice message is vague or drowned in noise and only the text does.
"""

from __future__ import annotations

import functools
import io
import math
import re
import string
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import firwin, resample_poly

from multimodal_fusion import speech
from multimodal_fusion.corruption import make_noise, mix_at_snr, typos
from multimodal_fusion.datasets import AudioClip

_TYPED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "card_lost": (
        "I lost my card {day} and need to block it right away",
        "my debit card was stolen, please freeze it",
        "can't find my card anywhere since {date}, can you cancel it and send a "
        "new one",
        "Hi, I think I left my credit card at a restaurant {day}. Please block it.",
        "wallet got stolen {day} with my bank card inside, what do I do",
        "please deactivate my card, it's missing",
        "Someone took my card. I need a replacement asap",
        "card lost abroad in {city}, need it blocked now",
    ),
    "card_arrival": (
        "my new card still hasn't arrived, it was ordered on {date}",
        "when will my replacement card be delivered?",
        "still waiting for the card you sent on {date}, nothing in the mail",
        "how long does it take for a new card to arrive",
        "Hi, the card I requested never showed up at my address in {city}",
        "any tracking for my new debit card? ordered over two weeks ago",
        "I was told my card would come in 5 days but it's been {n} days",
        "is my card on its way? need it before {date}",
    ),
    "refund_request": (
        "I'd like a refund for order {order}, the {product} arrived broken",
        "please refund the {amount} for my returned {product}",
        "returned the {product} on {date}, where is my money back",
        "can I get my money back for order {order}? I changed my mind",
        "requesting a full refund, the {product} does not work",
        "you said the refund of {amount} would be processed, still nothing",
        "how do I return the {product} and get reimbursed",
        "Refund please for order {order}, the item never worked",
    ),
    "billing_dispute": (
        "there's a charge of {amount} on my statement I don't recognise",
        "I was billed twice for the same month, please fix this",
        "why was I charged {amount} on {date}? I never authorised that",
        "my invoice shows {amount} but my plan costs less",
        "Dispute: unknown transaction of {amount} from {date}",
        "You overcharged me this month, the bill is way too high",
        "I see a fee on my bill that nobody told me about",
        "wrong amount on my latest invoice, I want it corrected",
    ),
    "change_address": (
        "I moved to {city}, please update my address",
        "need to change the delivery address on my account",
        "new address from {date}, I'm moving to {city}",
        "how do I update my home address online?",
        "please change my billing address, I've relocated",
        "my address is out of date, I live in {city} now",
        "can you send my post to my new flat instead",
        "update my address please, we moved last month",
    ),
    "cancel_subscription": (
        "please cancel my {plan} subscription",
        "I want to stop my monthly membership from {date}",
        "how do I unsubscribe? don't want to be charged again",
        "cancel the auto renewal on my {plan} please",
        "I no longer need the {plan}, end it at the end of this month",
        "stop my subscription, I'm not using it",
        "want to cancel the trial before it turns into a paid plan",
        "end my membership please, thanks",
    ),
    "password_reset": (
        "I forgot my password and can't log in",
        "the reset password link doesn't work",
        "locked out of my account after too many login attempts",
        "how can I change my password? never got the reset email",
        "can't sign in, it says my password is wrong",
        "need a new password, the old one expired",
        "reset link expired before I could use it",
        "I can't remember my login details for my account",
    ),
    "delivery_delay": (
        "my order {order} was supposed to arrive on {date}, still nothing",
        "where is my parcel? it's been a week",
        "the {product} I ordered is late, tracking hasn't updated since {date}",
        "delivery is delayed again, when will it actually arrive",
        "order {order} stuck in transit for days",
        "courier never came, waited in all day {day}",
        "package still not delivered to {city}",
        "still waiting on my {product}, shipping says delayed",
    ),
    "upgrade_plan": (
        "I want to upgrade to the {plan}",
        "how much is it to move up to the premium tier",
        "can I switch to a bigger plan with more data",
        "interested in upgrading my account, what are the options",
        "please upgrade me to the {plan} starting {date}",
        "I need more storage, which plan should I go for",
        "thinking about upgrading, is there a discount for annual billing",
        "move my account to the {plan} please",
    ),
    "payment_failed": (
        "my payment keeps getting declined",
        "tried to pay {amount} but the transaction failed",
        "card payment not going through on checkout",
        "why was my payment rejected on {date}?",
        "I got an error when paying for order {order}",
        "the direct debit failed, what should I do",
        "payment error again, I have enough money in the account",
        "could not complete the payment for my {product}",
    ),
    "technical_issue": (
        "the app keeps crashing when I open it",
        "website shows an error page since {day}",
        "my {product} won't turn on after the update",
        "can't upload anything, the app just freezes",
        "the app is really slow and logs me out all the time",
        "getting error code 503 whenever I open the settings",
        "the {product} stopped connecting to wifi",
        "screen goes blank after the latest app update",
    ),
    "close_account": (
        "please close my account permanently",
        "I want to delete my account and all my data",
        "how do I shut down my account for good",
        "close my account and send the remaining balance to me",
        "I'm leaving, please terminate my account",
        "remove my profile entirely, I don't want to be a customer anymore",
        "delete my account please",
        "I'd like to close the account I opened on {date}",
    ),
}

_SPOKEN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "card_lost": (
        "Hello, I've lost my bank card and I need it blocked.",
        "Hi, my card has been stolen, can you stop it please?",
        "I can't find my card, please cancel it for me.",
        "Somebody stole my purse with my card in it.",
        "Please block my card, I think I dropped it {day}.",
        "My card is missing and I need a new one.",
        "I lost my credit card in {city}, please freeze it.",
    ),
    "card_arrival": (
        "Hi, I'm still waiting for my new card to arrive.",
        "My replacement card hasn't come in the post yet.",
        "When will my new card get here?",
        "You sent me a card {day} but it never arrived.",
        "I ordered a new card ages ago and it's still not here.",
        "Can you tell me where my new card is?",
        "The new card hasn't been delivered to {city}.",
    ),
    "refund_request": (
        "Hello, I would like my money back for the {product}.",
        "I sent the {product} back, when do I get my refund?",
        "Can you refund me {amount} please?",
        "The {product} was faulty so I want a refund.",
        "I'm calling to ask for a refund on my order.",
        "I returned my item {day} and I need the money back.",
        "Please refund me, I don't want the {product} anymore.",
    ),
    "billing_dispute": (
        "There's a charge on my bill that I don't recognise.",
        "You've charged me twice this month.",
        "My bill is much higher than it should be.",
        "I want to dispute a payment of {amount}.",
        "Why is there an extra fee on my statement?",
        "I never agreed to this charge, please remove it.",
        "The amount on my invoice is wrong.",
    ),
    "change_address": (
        "Hi, I've moved house and need to update my address.",
        "Can you change my address to my new place in {city}?",
        "I'm moving to {city} next month, please update my details.",
        "Please send my letters to my new address.",
        "My address has changed, how do I update it?",
        "I need my billing address changed please.",
    ),
    "cancel_subscription": (
        "I'd like to cancel my subscription please.",
        "Please stop my monthly membership.",
        "I don't want the {plan} anymore, cancel it.",
        "Can you turn off the automatic renewal?",
        "I want to end my subscription before the next payment.",
        "Please cancel my membership from next month.",
    ),
    "password_reset": (
        "I can't remember my password.",
        "I'm locked out and need to reset my password.",
        "The password reset email never arrived.",
        "Hi, I can't log in, my password isn't working.",
        "Could you help me change my password?",
        "My login keeps failing, I think I need a new password.",
    ),
    "delivery_delay": (
        "My parcel still hasn't been delivered.",
        "The delivery was due {day} but nothing has come.",
        "Where is my order? It's very late.",
        "The courier hasn't turned up with my {product}.",
        "My package has been stuck in transit for a week.",
        "I'm still waiting for my delivery, it's delayed again.",
    ),
    "upgrade_plan": (
        "I'd like to upgrade to a better plan.",
        "Can I move up to the {plan}?",
        "How much would it cost to upgrade my account?",
        "I need more data, can you upgrade me?",
        "Please switch me to the premium plan.",
        "I'm interested in upgrading, what options do I have?",
    ),
    "payment_failed": (
        "My payment was declined and I don't know why.",
        "I tried to pay but the transaction failed.",
        "The card payment won't go through.",
        "I keep getting an error when I try to pay.",
        "My direct debit bounced this month.",
        "Your system rejected my payment of {amount}.",
    ),
    "technical_issue": (
        "The app keeps crashing on my phone.",
        "Your website isn't loading for me.",
        "My {product} stopped working after the update.",
        "Everything freezes when I open the app.",
        "I keep getting an error message on the website.",
        "The {product} won't connect to the internet.",
    ),
    "close_account": (
        "I want to close my account completely.",
        "Please delete my account and my personal data.",
        "I'm leaving, so please shut down my account.",
        "How do I close my account for good?",
        "Please close my account and pay out my balance.",
        "I don't want to be a customer anymore, close everything.",
    ),
}

# Uninformative messages: the same for every intent.
_TYPED_VAGUE = (
    "see my voice message",
    "please call me back",
    "as discussed on the phone",
    "hi, it's me again",
    "I left you a voicemail with the details",
    "same issue as before, details in the recording",
    "hello, any update?",
    "please listen to my audio message",
    "following up on my call",
    "it's urgent, please get back to me",
    "details in the voice note",
    "can someone contact me",
)
_SPOKEN_VAGUE = (
    "Hi, I just sent you a message, please read it.",
    "Hello, it's me again, the details are in my message.",
    "Hi, please check what I wrote to you.",
    "Hello, can someone get back to me, thanks.",
    "Hi, I'm calling about my earlier message.",
    "Hello, I've written it all down in the chat.",
    "Hi there, please read my email, thank you.",
)

_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "day": (
        "yesterday",
        "this morning",
        "on Monday",
        "last night",
        "on Friday",
        "two days ago",
        "last weekend",
        "on Tuesday",
    ),
    "city": (
        "Leeds",
        "Glasgow",
        "Boston",
        "Dublin",
        "Manchester",
        "Toronto",
        "Bristol",
        "Austin",
        "Cardiff",
        "Denver",
    ),
    "product": (
        "wireless earbuds",
        "smart speaker",
        "laptop stand",
        "coffee machine",
        "phone case",
        "fitness tracker",
        "router",
        "desk lamp",
        "tablet",
        "headphones",
    ),
    "plan": ("Premium plan", "Family plan", "Pro plan", "Unlimited plan", "Plus plan"),
}
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_CURRENCIES = (("$", "dollars", "USD"), ("£", "pounds", "GBP"), ("€", "euros", "EUR"))

_FIRST_NAMES = (
    "anna",
    "james",
    "priya",
    "tom",
    "maria",
    "li",
    "omar",
    "sarah",
    "david",
    "fatima",
    "lucas",
    "emma",
)
_LAST_NAMES = (
    "smith",
    "khan",
    "garcia",
    "brown",
    "nguyen",
    "o'neill",
    "murphy",
    "patel",
    "jones",
    "kowalski",
)
_EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.co.uk",
    "outlook.com",
    "example.org",
    "mail.com",
    "hotmail.com",
)
_PII_CLAUSES: dict[str, tuple[str, ...]] = {
    "email": (
        "my email is {pii}",
        "you can reach me at {pii}",
        "email me at {pii}",
        "contact: {pii}",
    ),
    "phone": (
        "call me on {pii}",
        "my number is {pii}",
        "phone {pii}",
        "you can ring me at {pii}",
    ),
    "card": (
        "card number {pii}",
        "my card is {pii}",
        "it's the card {pii}",
        "card no {pii}",
    ),
}

_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "thank you": ("ty", "thank u"),
    "please": ("pls", "plz"),
    "you": ("u",),
    "your": ("ur",),
    "account": ("acct", "acc"),
    "thanks": ("thx", "thnx"),
    "because": ("bc", "cos"),
    "message": ("msg",),
    "tomorrow": ("tmrw",),
    "number": ("no.", "nr"),
    "are": ("r",),
    "as soon as possible": ("asap",),
}
_ABBREVIATION_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(word) for word in _ABBREVIATIONS) + r")\b",
    re.IGNORECASE,
)
_PLACEHOLDER = "§{}§"  # survives the typing noise: no letters, no word characters


def plan_contacts(seed: int, parameters: dict[str, Any]) -> pd.DataFrame:
    """Draws every random choice of the demo dataset, one row per contact.

    Args:
        seed: Global seed; one ``numpy.random.default_rng(seed)`` makes all choices.
        parameters: The ``demo_data`` parameters (counts, shares, text noise,
            voices, audio).

    Returns:
        The plan: ``id``, ``label``, ``speaker``, the typed and spoken texts, the
        voice, rate, pitch and noise of the clip, which modalities exist and which
        carry the intent, and the PII planted in the typed text.
    """
    _check_parameters(parameters)
    rng = np.random.default_rng(seed)
    n_contacts = int(parameters["n_contacts"])
    shares = parameters["shares"]
    speakers = _make_speakers(rng, int(parameters["n_speakers"]), parameters["voices"])
    intents = list(parameters["intents"])
    labels = rng.permutation(np.resize(np.asarray(intents, dtype=object), n_contacts))
    speaker_ix = rng.integers(len(speakers), size=n_contacts)
    modality = rng.choice(
        ["both", "text_only", "audio_only"],
        size=n_contacts,
        p=[
            1.0 - shares["text_only"] - shares["audio_only"],
            shares["text_only"],
            shares["audio_only"],
        ],
    )
    has_label = rng.random(n_contacts) >= shares["unlabeled"]
    width = max(5, len(str(n_contacts)))
    rows = [
        _plan_contact(
            rng,
            contact_id=f"{parameters.get('id_prefix', 'c')}{i + 1:0{width}d}",
            label=str(labels[i]),
            speaker=speakers[speaker_ix[i]],
            modality=str(modality[i]),
            has_label=bool(has_label[i]),
            parameters=parameters,
        )
        for i in range(n_contacts)
    ]
    plan = pd.DataFrame(rows)
    for column in ("rate", "pitch", "speech_seed", "noise_seed"):
        plan[column] = plan[column].astype("Int64")
    plan["defect"] = _plan_defects(plan, parameters.get("defects") or {}, seed)
    return plan


def _plan_defects(plan: pd.DataFrame, defects: dict[str, int], seed: int) -> list[str]:
    """Which contacts get a damaged record: ``corrupt_clip`` (a FLAC file cut
    short) or ``empty_text`` (an empty typed message), each among the labelled
    contacts with both modalities whose other modality carries the intent.
    Drawn from their own generator, so the rest of the plan does not change."""
    rng = np.random.default_rng([seed, 7])
    labelled_pairs = plan["has_text"] & plan["has_audio"] & plan["has_label"]
    marks = pd.Series("", index=plan.index, dtype=object)
    for defect, other_informative in (
        ("corrupt_clip", "text_informative"),
        ("empty_text", "audio_informative"),
    ):
        candidates = plan.index[
            labelled_pairs & plan[other_informative] & (marks == "")
        ]
        count = min(int(defects.get(f"{defect}s", 0)), len(candidates))
        marks[rng.choice(candidates, size=count, replace=False)] = defect
    return marks.tolist()


def make_raw_texts(demo_contacts: pd.DataFrame) -> pd.DataFrame:
    """Selects the typed messages of the contacts that have one.

    Args:
        demo_contacts: The plan from :func:`plan_contacts`.

    Returns:
        ``raw_texts``: columns ``id, text`` (str).
    """
    typed = demo_contacts.loc[demo_contacts["has_text"], ["id", "typed_text"]]
    typed.loc[demo_contacts["defect"] == "empty_text", "typed_text"] = ""
    return typed.rename(columns={"typed_text": "text"}).reset_index(drop=True)


def make_raw_labels(demo_contacts: pd.DataFrame) -> pd.DataFrame:
    """Selects the intent and speaker of the labelled contacts.

    Args:
        demo_contacts: The plan from :func:`plan_contacts`.

    Returns:
        ``raw_labels``: columns ``id, label, speaker`` (str).
    """
    labelled = demo_contacts.loc[demo_contacts["has_label"]]
    return labelled[["id", "label", "speaker"]].reset_index(drop=True)


def make_demo_manifest(demo_contacts: pd.DataFrame) -> pd.DataFrame:
    """Describes how each contact was made, for checks downstream (e.g. PII leaks).

    Args:
        demo_contacts: The plan from :func:`plan_contacts`.

    Returns:
        ``demo_manifest``: one row per contact, ``id`` first, then the label,
        speaker, texts, voice, noise, informativeness and availability flags and
        ``planted_pii`` (the raw PII strings, joined by ``|``).
    """
    first = ["id", "label", "speaker", "typed_text", "spoken_text", "voice", "rate"]
    first += ["pitch", "snr_db", "text_informative", "audio_informative"]
    first += ["has_text", "has_audio", "has_label", "planted_pii"]
    rest = [column for column in demo_contacts.columns if column not in first]
    return demo_contacts[first + rest].reset_index(drop=True)


def synthesize_audio(
    demo_contacts: pd.DataFrame, parameters: dict[str, Any]
) -> dict[str, AudioClip]:
    """Speaks the voice messages with eSpeak NG and mixes in background noise.

    Speech is synthesised in plan order (in a fresh process unless
    ``audio.isolated_synthesis`` is false), so two runs give identical clips.

    Args:
        demo_contacts: The plan from :func:`plan_contacts`.
        parameters: The ``demo_data`` parameters; uses ``audio``.

    Returns:
        ``raw_audio``: ``"<id>.flac"`` -> ``AudioClip`` (float32 mono waveform at
        ``audio.sample_rate``), for the contacts that have audio; a contact
        planned with a ``corrupt_clip`` gets the bytes of a cut FLAC file.
    """
    audio = parameters["audio"]
    spoken = demo_contacts.loc[demo_contacts["has_audio"]]
    requests = [_speech_request(row) for row in spoken.itertuples()]
    waveforms = speech.synthesize_batch(
        requests, isolated=bool(audio["isolated_synthesis"])
    )
    clips = {}
    for row, waveform in zip(spoken.itertuples(), waveforms, strict=True):
        clip = _render_clip(waveform, row, audio)
        clips[f"{row.id}.flac"] = (
            cut_short(clip) if row.defect == "corrupt_clip" else clip
        )
    return clips


def cut_short(clip: AudioClip) -> bytes:
    """The clip's FLAC file cut to its first third: a copy that broke off."""
    buffer = io.BytesIO()
    sf.write(buffer, clip.waveform, clip.sample_rate, format="FLAC")
    data = buffer.getvalue()
    return data[: len(data) // 3]


def _speech_request(row: Any) -> dict[str, Any]:
    """Keyword arguments of ``speech.synthesize`` for one planned contact."""
    accent, _, variant = row.voice.partition("+")
    return {
        "text": row.spoken_text,
        "voice": accent,
        "variant": variant or None,
        "rate": int(row.rate),
        "pitch": int(row.pitch),
        "seed": int(row.speech_seed),
    }


def _check_parameters(parameters: dict[str, Any]) -> None:
    shares = parameters["shares"]
    unknown = set(parameters["intents"]) - set(_TYPED_TEMPLATES)
    if unknown:
        raise ValueError(
            f"Unknown intents {sorted(unknown)}; choose among {list(_TYPED_TEMPLATES)}."
        )
    if len(set(parameters["intents"])) < 2:
        raise ValueError("demo_data needs at least two intents.")
    if shares["text_only"] + shares["audio_only"] >= 1:
        raise ValueError("shares.text_only + shares.audio_only must be below 1.")
    if shares["text_uninformative"] + shares["audio_uninformative"] > 1:
        raise ValueError(
            "shares.text_uninformative + shares.audio_uninformative must be at most "
            "1: they are disjoint shares of the contacts."
        )
    if int(parameters["n_speakers"]) < 1 or int(parameters["n_contacts"]) < 1:
        raise ValueError("n_contacts and n_speakers must be positive.")


def _make_speakers(
    rng: np.random.Generator, n_speakers: int, voices: dict[str, Any]
) -> list[dict[str, Any]]:
    """Fixed voice profile per speaker: accent + variant, base rate and pitch."""
    (rate_low, rate_high), (pitch_low, pitch_high) = (
        voices["rate_range"],
        voices["pitch_range"],
    )
    speakers = []
    for i in range(n_speakers):
        accent, variant = rng.choice(voices["accents"]), rng.choice(voices["variants"])
        speakers.append(
            {
                "speaker": f"spk{i + 1:03d}",
                "voice": f"{accent}+{variant}",
                "rate": int(rng.integers(rate_low, rate_high + 1)),
                "pitch": int(rng.integers(pitch_low, pitch_high + 1)),
            }
        )
    return speakers


def _plan_contact(
    rng: np.random.Generator,
    *,
    contact_id: str,
    label: str,
    speaker: dict[str, Any],
    modality: str,
    has_label: bool,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """One contact: which modality carries the intent, texts, voice and noise."""
    shares, voices, audio = (
        parameters["shares"],
        parameters["voices"],
        parameters["audio"],
    )
    has_text, has_audio = modality != "audio_only", modality != "text_only"
    draw = rng.random()
    if modality == "both":  # two disjoint shares: [0, p_text) and [p_text, +p_audio)
        p_text, p_audio = shares["text_uninformative"], shares["audio_uninformative"]
        text_informative = not draw < p_text
        audio_informative = not p_text <= draw < p_text + p_audio
    else:
        text_informative, audio_informative = has_text, has_audio
    drowned = bool(rng.random() < shares["audio_drowned"])
    if not audio_informative and has_audio:
        audio_kind = "drowned" if drowned else "vague"
    else:
        audio_kind = "informative" if has_audio else "none"

    typed_text, planted = _typed_message(
        rng, label, text_informative, shares["pii"], parameters["text_noise"]
    )
    spoken_pool = _SPOKEN_VAGUE if audio_kind == "vague" else _SPOKEN_TEMPLATES[label]
    spoken_text = _fill(str(rng.choice(spoken_pool)), rng, spoken=True)

    if audio_kind == "drowned":
        snr_db = rng.uniform(*audio["drowned_snr_db"])
        noise_type = str(rng.choice(audio["drowned_noise_types"]))
    else:
        snr_db = rng.uniform(*audio["snr_db"])
        kinds = list(audio["noise_types"])
        weights = np.asarray([audio["noise_types"][kind] for kind in kinds], float)
        noise_type = str(rng.choice(kinds, p=weights / weights.sum()))
    rate_jitter, pitch_jitter = voices["rate_jitter"], voices["pitch_jitter"]
    rate = speaker["rate"] + rng.integers(-rate_jitter, rate_jitter + 1)
    pitch = speaker["pitch"] + rng.integers(-pitch_jitter, pitch_jitter + 1)
    clip = {
        "voice": speaker["voice"],
        "rate": int(np.clip(rate, 80, 450)),
        "pitch": int(np.clip(pitch, 0, 99)),
        "snr_db": round(float(snr_db), 2),
        "noise_type": noise_type,
        "lead_in_s": round(float(rng.uniform(*audio["padding_s"])), 3),
        "tail_s": round(float(rng.uniform(*audio["padding_s"])), 3),
        "peak": round(float(rng.uniform(*audio["peak"])), 3),
        "speech_seed": int(rng.integers(2**31)),
        "noise_seed": int(rng.integers(2**31)),
    }
    if not has_audio:
        clip = dict.fromkeys(clip, None) | {"voice": "", "noise_type": ""}
        spoken_text = ""
    text_kind = "informative" if text_informative else "vague"
    if not has_text:
        typed_text, planted, text_kind = "", [], "none"
    return {
        "id": contact_id,
        "label": label,
        "speaker": speaker["speaker"],
        "typed_text": typed_text,
        "spoken_text": spoken_text,
        **clip,
        "text_informative": bool(text_informative),
        "audio_informative": bool(audio_informative),
        "has_text": has_text,
        "has_audio": has_audio,
        "has_label": has_label,
        "planted_pii": "|".join(planted),
        "text_kind": text_kind,
        "audio_kind": audio_kind,
    }


def _typed_message(
    rng: np.random.Generator,
    label: str,
    informative: bool,
    pii_share: float,
    noise: dict[str, float],
) -> tuple[str, list[str]]:
    """A typed message with typing noise, and the PII strings planted in it."""
    pool = _TYPED_TEMPLATES[label] if informative else _TYPED_VAGUE
    text = _fill(str(rng.choice(pool)), rng, spoken=False)
    planted: list[str] = []
    if rng.random() < pii_share:
        n_items = 1 if rng.random() < 0.75 else 2
        for index, kind in enumerate(
            rng.choice(list(_PII_CLAUSES), size=n_items, replace=False)
        ):
            clause = str(rng.choice(_PII_CLAUSES[kind]))
            clause = clause.format(pii=_PLACEHOLDER.format(index))
            separator = str(rng.choice([". ", ", ", " - ", " "]))
            if rng.random() < 0.3:
                text = f"{clause[0].upper()}{clause[1:]}{separator}{text}"
            else:
                text = f"{text.rstrip('.')}{separator}{clause}"
            planted.append(_pii_value(rng, str(kind)))
    text = _add_typing_noise(text, rng, noise)
    for index, value in enumerate(planted):
        text = text.replace(_PLACEHOLDER.format(index), value)
    return text, planted


def _fill(template: str, rng: np.random.Generator, *, spoken: bool) -> str:
    """Fills the ``{slot}`` fields of a template with random values."""
    # dict, not set: a fixed order of draws, whatever the hash seed
    fields = dict.fromkeys(
        name for _, name, _, _ in string.Formatter().parse(template) if name
    )
    return template.format(**{name: _slot_value(name, rng, spoken) for name in fields})


def _slot_value(name: str, rng: np.random.Generator, spoken: bool) -> str:
    if name in _SLOT_VALUES:
        return str(rng.choice(_SLOT_VALUES[name]))
    if name == "amount":
        symbol, word, code = _CURRENCIES[rng.integers(len(_CURRENCIES))]
        units, cents = int(rng.integers(5, 400)), int(rng.integers(100))
        if spoken:
            return f"{units} {word}"
        return str(
            rng.choice(
                [f"{symbol}{units}.{cents:02d}", f"{symbol}{units}", f"{units} {code}"]
            )
        )
    if name == "date":
        day, month = int(rng.integers(1, 29)), int(rng.integers(1, 13))
        return str(
            rng.choice(
                [
                    f"{day} {_MONTHS[month - 1]}",
                    f"{_MONTHS[month - 1]} {day}",
                    f"{day:02d}/{month:02d}",
                    f"the {day}{_ordinal_suffix(day)}",
                ]
            )
        )
    if name == "order":
        digits = int(rng.integers(10_000, 10_000_000))
        return str(rng.choice([f"#{digits}", f"A-{digits}", f"{digits}"]))
    if name == "n":
        return str(rng.integers(7, 26))
    raise KeyError(f"No values for template slot '{name}'.")


def _ordinal_suffix(day: int) -> str:
    if 10 <= day % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _pii_value(rng: np.random.Generator, kind: str) -> str:
    """A fake email, phone number or Luhn-valid 16-digit card number."""
    if kind == "email":
        first = str(rng.choice(_FIRST_NAMES))
        last = str(rng.choice(_LAST_NAMES)).replace("'", "")
        domain = str(rng.choice(_EMAIL_DOMAINS))
        local = str(
            rng.choice(
                [
                    f"{first}.{last}",
                    f"{first}{last}{rng.integers(10, 100)}",
                    f"{first[0]}{last}",
                    f"{first}_{last}",
                ]
            )
        )
        return f"{local}@{domain}"
    digits = "".join(str(d) for d in rng.integers(0, 10, size=10))
    if kind == "phone":
        return str(
            rng.choice(
                [
                    f"+44 7{digits[:3]} {digits[3:9]}",
                    f"07{digits[:3]} {digits[3:9]}",
                    f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                    f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
                ]
            )
        )
    prefix = str(rng.choice(["4", "51", "52", "53", "54", "55"]))
    body = prefix + "".join(str(d) for d in rng.integers(0, 10, size=15 - len(prefix)))
    number = body + _luhn_check_digit(body)
    groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return str(rng.choice([" ".join(groups), "-".join(groups), number]))


def _luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _add_typing_noise(
    text: str, rng: np.random.Generator, noise: dict[str, float]
) -> str:
    """Abbreviations, typos (swap/drop/double letters), casing and punctuation."""
    rate = noise["abbreviation_rate"]
    text = _ABBREVIATION_PATTERN.sub(
        lambda match: (
            str(rng.choice(_ABBREVIATIONS[match.group(0).lower()]))
            if rng.random() < rate
            else match.group(0)
        ),
        text,
    )
    text = typos(text, rng, noise["typo_rate"])
    if rng.random() < noise["casing_noise"]:
        style = rng.choice(["lower", "upper", "mixed"], p=[0.6, 0.15, 0.25])
        if style == "lower":
            text = text.lower()
        elif style == "upper":
            text = text.upper()
        else:
            text = " ".join(
                word.capitalize() if rng.random() < 0.3 else word.lower()
                for word in text.split(" ")
            )
    if rng.random() < noise["punctuation_noise"]:
        text = text.rstrip(".!?") + str(rng.choice(["", "", "!!", "??", "..."]))
    return text


def _render_clip(waveform: np.ndarray, row: Any, audio: dict[str, Any]) -> AudioClip:
    """Resamples the speech, pads it with noise-only lead-in/tail and mixes noise
    at the planned SNR (speech power over the synthesised utterance)."""
    sample_rate = int(audio["sample_rate"])
    if sample_rate != speech.SAMPLE_RATE:
        up, down = _resampling_ratio(speech.SAMPLE_RATE, sample_rate)
        waveform = resample_poly(
            waveform, up, down, window=_resampling_filter(up, down)
        )
    lead = int(row.lead_in_s * sample_rate)
    length = lead + len(waveform) + int(row.tail_s * sample_rate)
    length = max(length, int(audio["min_duration_s"] * sample_rate))
    clean = np.zeros(length)
    clean[lead : lead + len(waveform)] = waveform
    rng = np.random.default_rng(int(row.noise_seed))
    noise = make_noise(row.noise_type, length, sample_rate, rng)
    mixture = mix_at_snr(clean, noise, row.snr_db, reference=waveform)
    mixture *= row.peak / max(np.max(np.abs(mixture)), 1e-9)
    return AudioClip(mixture.astype(np.float32), sample_rate)


def _resampling_ratio(source_rate: int, target_rate: int) -> tuple[int, int]:
    divisor = math.gcd(source_rate, target_rate)
    return target_rate // divisor, source_rate // divisor


@functools.cache
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """scipy's default anti-aliasing filter for ``resample_poly``, designed once."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
