"""What decides a synthetic benchmark: one options object, validated, exposed on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from fgvc.errors import ConfigError

MULTI_DOMAINS = ("cub", "cars", "aircraft", "flowers")


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

