"""What decides a synthetic benchmark: one options object, validated, exposed on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from fgvc.data.synthetic.domains import code_levels
from fgvc.data.synthetic.mechanisms import BADGE_COLOURS
from fgvc.errors import ConfigError

MULTI_DOMAINS = ("cub", "cars", "aircraft", "flowers")
# The switches of docs/synthetic.md, each off by default.
MECHANISMS = ("regional_appearance", "local_evidence", "shared_cues", "transfer_target")


@dataclass
class SynthOptions:
    """Everything that decides the benchmark; the CLI exposes each field as ``--field-name``."""

    # Master seed: same options -> byte-identical annotation files and identical pixels.
    seed: int = 0
    # Side of the square images in pixels (aircraft images get BANNER_HEIGHT extra rows).
    size: int = 64
    # JPEG quality of the written images.
    jpeg_quality: int = 90
    # iNat domain: number of genera and of species per genus (classes = genera * species_per_genus).
    genera: int = 8
    species_per_genus: int = 4
    # iNat domain: images per class in train.json, in train_mini.json (a subset of train) and in val.json.
    train_per_class: int = 25
    train_mini_per_class: int = 10
    val_per_class: int = 8
    # iNat domain: share of images with missing metadata (null location, null date, or both).
    missing_metadata_fraction: float = 0.1
    # iNat domain: observation dates are spread over these years (inclusive; 2016 and 2020 are leap years).
    first_year: int = 2016
    last_year: int = 2020
    # Multi-domain: which domains to write (any of cub, cars, aircraft, flowers).
    domains: tuple[str, ...] = MULTI_DOMAINS
    # Multi-domain: genera and species per genus in each domain, and images per class.
    domain_genera: int = 3
    domain_species_per_genus: int = 3
    domain_images_per_class: int = 30
    # Multi-domain: share of each class's images in the test split; formats with an official
    # validation split (aircraft, flowers) take the same share again for val.
    domain_test_fraction: float = 1 / 3
    # Visibility of the species-level details (colour steps, stripe and spot contrast): 0 makes
    # species of a genus indistinguishable from pixels, larger values make them easier.
    detail_strength: float = 1.0
    # Amplitude of the per-image nuisances (pose, scale, clutter, lighting, noise): 0 turns them off.
    nuisance: float = 1.0

    # The mechanisms the methods rely on, each off by default (docs/synthetic.md says what each tests).
    # iNat domain, Dynamic MLP: siblings are paired; a pair shares two regions and a season, and each
    # shows the other's details in the second region, so a detail means a different species there.
    regional_appearance: bool = False
    # Every domain, RMG-PMSI: siblings look alike on the whole object and differ only by one small mark
    # (a few per cent of the object) at a random place on it.
    local_evidence: bool = False
    # Multi-domain, the erudite model: one detail axis of every domain is drawn as a part type (a
    # badge) that looks the same in all domains; the other two stay each domain's own.
    shared_cues: bool = False
    # Multi-domain, CTC: this domain's (the transfer target's) first detail axis is drawn as the badge,
    # and every other domain carries the badge at a random level, unrelated to its classes.
    transfer_target: str = ""

    def __post_init__(self) -> None:
        self.domains = tuple(self.domains)
        self.validate()

    def validate(self) -> None:
        """Reject impossible values with one line naming the option (the CLI prints it as is)."""
        positive = ("size", "genera", "species_per_genus", "train_per_class", "val_per_class",
                    "domain_genera", "domain_species_per_genus", "domain_images_per_class")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"synthetic option {name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"synthetic option seed must be >= 0, got {self.seed}")
        if self.size < 16:
            raise ConfigError(f"synthetic option size must be >= 16 pixels, got {self.size}")
        if not 0 <= self.train_mini_per_class <= self.train_per_class:
            raise ConfigError("synthetic option train_mini_per_class must be between 0 and train_per_class, "
                              f"got {self.train_mini_per_class}")
        if not 0.0 <= self.missing_metadata_fraction <= 1.0:
            raise ConfigError("synthetic option missing_metadata_fraction must be in [0, 1], "
                              f"got {self.missing_metadata_fraction}")
        if not 0.0 < self.domain_test_fraction < 0.5:
            raise ConfigError("synthetic option domain_test_fraction must be in (0, 0.5), "
                              f"got {self.domain_test_fraction}")
        if self.last_year < self.first_year:
            raise ConfigError(f"synthetic option last_year ({self.last_year}) is before "
                              f"first_year ({self.first_year})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"synthetic option jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.detail_strength < 0 or self.nuisance < 0:
            raise ConfigError("synthetic options detail_strength and nuisance must be >= 0")
        unknown = [d for d in self.domains if d not in MULTI_DOMAINS]
        if unknown or not self.domains:
            raise ConfigError("synthetic option domains must be a non-empty subset of "
                              f"{', '.join(MULTI_DOMAINS)}, "
                              f"got {', '.join(self.domains) or 'nothing'}")
        if self.transfer_target and self.transfer_target not in self.domains:
            raise ConfigError(f"synthetic option transfer_target must be one of the written domains "
                              f"({', '.join(self.domains)}) or empty, got {self.transfer_target}")
        if (self.shared_cues or self.transfer_target) and \
                code_levels(self.domain_species_per_genus) > len(BADGE_COLOURS):
            raise ConfigError("synthetic option domain_species_per_genus must be at most "
                              f"{len(BADGE_COLOURS) ** 3} with a badge ({len(BADGE_COLOURS)} colours), "
                              f"got {self.domain_species_per_genus}")
        if self.transfer_target and self.shared_cues:
            raise ConfigError("synthetic options shared_cues and transfer_target both draw the badge: "
                              "choose one")

