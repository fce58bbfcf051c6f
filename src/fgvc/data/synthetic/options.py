"""What decides a synthetic benchmark: one options object, validated, exposed on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

from fgvc.data.synthetic.domains import code_levels
from fgvc.data.synthetic.mechanisms import BADGE_COLOURS
from fgvc.errors import ConfigError

MULTI_DOMAINS = ("cub", "cars", "aircraft", "flowers")
# The switches of docs/synthetic.md, each off by default.
MECHANISMS = ("regional_appearance", "local_evidence", "shared_cues", "transfer_target")


def _option(default: object, help: str) -> object:
    """A field whose ``help`` is what ``fgvc data synth --help`` says about it."""
    return field(default=default, metadata={"help": help})


@dataclass
class SynthOptions:
    """Everything that decides the benchmark; the CLI exposes each field as ``--field-name``."""

    seed: int = _option(0, "master seed: the same options give byte-identical annotation files and pixels")
    size: int = _option(64, "side of the square images in pixels (aircraft images get a 20-row banner more)")
    jpeg_quality: int = _option(90, "JPEG quality of the written images")
    genera: int = _option(8, "iNat domain: genera (classes = genera x species per genus)")
    species_per_genus: int = _option(4, "iNat domain: species per genus")
    train_per_class: int = _option(25, "iNat domain: images per class in train.json")
    train_mini_per_class: int = _option(10, "iNat domain: of those, images per class in train_mini.json")
    val_per_class: int = _option(8, "iNat domain: images per class in val.json")
    missing_metadata_fraction: float = _option(
        0.1, "iNat domain: share of images with missing metadata (null location, null date, or both)")
    first_year: int = _option(2016, "iNat domain: first year of the observation dates")
    last_year: int = _option(2020, "iNat domain: last year of the observation dates (inclusive)")
    domains: tuple[str, ...] = _option(MULTI_DOMAINS, "multi-domain: which domains to write")
    domain_genera: int = _option(3, "multi-domain: genera per domain")
    domain_species_per_genus: int = _option(3, "multi-domain: species per genus")
    domain_images_per_class: int = _option(30, "multi-domain: images per class, all splits together")
    domain_test_fraction: float = _option(
        1 / 3, "multi-domain: share of each class's images in test (aircraft and flowers: as many in val)")
    detail_strength: float = _option(
        1.0, "visibility of the species-level details: 0 makes the species of a genus indistinguishable "
        "from pixels, larger values make them easier")
    nuisance: float = _option(
        1.0, "amplitude of the per-image nuisances (pose, scale, clutter, lighting, noise); 0 turns them off")

    # The mechanisms the methods rely on, each off by default (docs/synthetic.md says what each tests).
    regional_appearance: bool = _option(
        False, "iNat domain (Dynamic MLP): siblings come in pairs sharing two regions and a season, and in "
        "the second region each shows its partner's details: a detail means another species there")
    local_evidence: bool = _option(
        False, "every domain (RMG-PMSI): siblings look alike on the whole object and differ only by one "
        "small mark (a few per cent of the object) at a random place on it")
    shared_cues: bool = _option(
        False, "multi-domain (the erudite model): one detail axis of every domain is drawn as a badge that "
        "looks the same in all domains; the other two stay each domain's own")
    transfer_target: str = _option(
        "", "multi-domain (CTC): this domain's first detail axis is drawn as the badge, and every other "
        "domain carries the badge at a random level, unrelated to its classes")

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

