"""Demo catalogue: the five QTI nodes and a set of realistic German offerings in 2027.

Pure data. Every id is a uuid5 of `DEMO_NAMESPACE` and a fixed slug, so loading the demo data twice
yields the same ids (and an upsert changes nothing). `generated_offerings` adds any number of further
plausible offerings, deterministically per seed, for benchmarks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID, uuid5

from qti_contracts.events import OfferingKind, OfferingStatus, Topic
from qti_runtime.german import BERLIN
from services.catalogue.domain import Node, Offering, OfferingSession

DEMO_NAMESPACE = UUID("b7b841cf-016d-46b2-acff-811b685c7c27")

Kind = OfferingKind
T = Topic


def node_id_for(slug: str) -> UUID:
    return uuid5(DEMO_NAMESPACE, f"node:{slug}")


def offering_id_for(slug: str) -> UUID:
    return uuid5(DEMO_NAMESPACE, f"offering:{slug}")


def session_id_for(offering_slug: str, index: int) -> UUID:
    return uuid5(DEMO_NAMESPACE, f"session:{offering_slug}:{index}")


# --- staff accounts (development only) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoStaff:
    """A demo account of the staff console; `node` None = the project lead. The passwords are public
    (printed by `qti run`): `devtools.demo` creates these accounts only outside `QTI_ENV=production`."""

    email: str
    node: str | None
    password: str

    @property
    def node_id(self) -> UUID | None:
        return node_id_for(self.node) if self.node is not None else None


DEMO_STAFF: tuple[DemoStaff, ...] = (
    DemoStaff("leitung@qti-demo.de", None, "leitung-demo-2027"),
    DemoStaff("gotha@qti-demo.de", "gotha", "gotha-demo-2027"),
)


# --- nodes -------------------------------------------------------------------------------------

_NODE_ROWS: tuple[tuple[str, str, str, str, str, date], ...] = (
    # slug, town, county, host, address, opened_on
    ("gotha", "Gotha", "Gotha", "VHS-Bildungswerk", "Gleichenstraße 48, 99867 Gotha", date(2024, 3, 1)),
    (
        "soemmerda",
        "Sömmerda",
        "Sömmerda",
        "Kreisvolkshochschule Sömmerda",
        "Bahnhofstraße 10, 99610 Sömmerda",
        date(2024, 8, 2),
    ),
    (
        "weberstedt",
        "Weberstedt",
        "Unstrut-Hainich-Kreis",
        "WaldResort Am Nationalpark Hainich",
        "Am Hainich 1, 99947 Weberstedt",
        date(2024, 9, 6),
    ),
    (
        "eisenach",
        "Eisenach",
        "Wartburgkreis",
        "SBH Nordost",
        "Mühlhäuser Straße 100, 99817 Eisenach",
        date(2024, 10, 14),
    ),
    (
        "rohr",
        "Rohr",
        "Schmalkalden-Meiningen",
        "BTZ Rohr-Kloster",
        "Kloster 1, 98530 Rohr",
        date(2024, 11, 15),
    ),
)


def demo_nodes() -> tuple[Node, ...]:
    """The five QTI nodes, in the order they opened."""
    return tuple(
        Node(
            node_id=node_id_for(slug),
            name=f"QTI-Knoten {town}",
            town=town,
            county=county,
            host=host,
            address=address,
            opened_on=opened_on,
        )
        for slug, town, county, host, address, opened_on in _NODE_ROWS
    )


def _default_location(node_slug: str) -> str:
    for slug, _town, _county, host, address, _opened in _NODE_ROWS:
        if slug == node_slug:
            return f"{host}, {address}"
    raise KeyError(node_slug)


# --- offerings ---------------------------------------------------------------------------------

SessionRow = tuple[str, str, str]
"""(ISO date, start "HH:MM", end "HH:MM") in Europe/Berlin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    slug: str
    node: str
    kind: OfferingKind
    topic: Topic
    title: str
    description: str
    target_group: str
    sessions: tuple[SessionRow, ...]
    capacity: int
    waitlist_limit: int = 0
    max_per_company: int | None = None
    fee_eur: str = "0.00"
    deadline_days: int = 5
    location: str | None = None
    status: OfferingStatus = OfferingStatus.PUBLISHED


def _at(day: str, clock: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), tzinfo=BERLIN)


def _weekly(first_day: str, count: int, start: str, end: str, step_days: int = 7) -> tuple[SessionRow, ...]:
    first = date.fromisoformat(first_day)
    return tuple(((first + timedelta(days=step_days * i)).isoformat(), start, end) for i in range(count))


def _ihk_hydrogen_sessions() -> tuple[SessionRow, ...]:
    """Friday afternoons and Saturdays every other week, April to June 2027."""
    fridays = _weekly("2027-04-09", 6, "13:00", "18:15", step_days=14)
    saturdays = _weekly("2027-04-10", 6, "08:30", "15:30", step_days=14)
    return tuple(row for pair in zip(fridays, saturdays, strict=True) for row in pair)


_SPECS: tuple[_Spec, ...] = (
    _Spec(
        slug="pilotlehrgang-elektromobilitaet",
        node="soemmerda",
        kind=Kind.COURSE,
        topic=T.ELEKTROMOBILITAET,
        title="Pilotlehrgang Elektromobilität",
        description=(
            "Der Pilotlehrgang vermittelt in sechs Präsenztagen die Grundlagen der Elektromobilität aus "
            "Sicht der Zulieferindustrie: Antriebsstrang, Batterietechnik, Ladeinfrastruktur und die "
            "Folgen für Produkte und Prozesse. Praxisbeispiele aus Thüringer Unternehmen und eine "
            "Exkursion zu einem Batteriehersteller runden den Lehrgang ab."
        ),
        target_group="Fachkräfte aus Produktion, Entwicklung und Vertrieb von Automobilzulieferern",
        sessions=_weekly("2027-02-04", 6, "08:30", "15:30"),
        capacity=16,
        waitlist_limit=8,
        max_per_company=3,
        deadline_days=10,
    ),
    _Spec(
        slug="batteriesysteme-aufbau-sicherheit-recycling",
        node="soemmerda",
        kind=Kind.COURSE,
        topic=T.ELEKTROMOBILITAET,
        title="Batteriesysteme: Aufbau, Sicherheit und Recycling",
        description=(
            "Wie ist ein Traktionsbatteriesystem aufgebaut, und welche Anforderungen ergeben sich daraus "
            "für Zulieferteile? Der Kurs behandelt Zellchemien, Gehäuse und Thermomanagement sowie die "
            "Kreislaufwirtschaft nach der neuen EU-Batterieverordnung."
        ),
        target_group="Konstruktion, Qualitätssicherung und Einkauf",
        sessions=_weekly("2027-09-09", 3, "09:00", "16:00"),
        capacity=14,
        waitlist_limit=5,
        max_per_company=2,
        status=OfferingStatus.DRAFT,
    ),
    _Spec(
        slug="industrie-4-0-vernetzte-fertigung",
        node="gotha",
        kind=Kind.COURSE,
        topic=T.INDUSTRIE_4_0,
        title="Industrie 4.0 im Mittelstand: vom Papier zur vernetzten Fertigung",
        description=(
            "An drei Tagen lernen die Teilnehmenden, wie Maschinendaten erfasst, ausgewertet und für "
            "Entscheidungen genutzt werden. Im Mittelpunkt stehen kleine, bezahlbare Schritte: "
            "Retrofit älterer Anlagen, digitale Schichtübergabe und Kennzahlen-Dashboards."
        ),
        target_group="Produktionsleitungen, Meisterinnen und Meister, IT-Verantwortliche",
        sessions=_weekly("2027-03-02", 3, "09:00", "16:30"),
        capacity=18,
        waitlist_limit=6,
        max_per_company=3,
    ),
    _Spec(
        slug="digitale-transformation-fuehren",
        node="gotha",
        kind=Kind.WORKSHOP,
        topic=T.INDUSTRIE_4_0,
        title="Digitale Transformation führen – Workshop für Führungskräfte",
        description=(
            "Digitalisierung gelingt nur, wenn die Belegschaft mitgenommen wird. Der Workshop zeigt, wie "
            "Führungskräfte Veränderungsvorhaben planen, Widerstände erkennen und Beschäftigte "
            "beteiligen. Eigene Vorhaben der Teilnehmenden werden gemeinsam bearbeitet."
        ),
        target_group="Geschäftsführungen und Führungskräfte kleiner und mittlerer Unternehmen",
        sessions=(("2027-05-19", "09:00", "15:00"),),
        capacity=12,
        waitlist_limit=4,
        max_per_company=2,
    ),
    _Spec(
        slug="ki-qualitaetssicherung",
        node="eisenach",
        kind=Kind.COURSE,
        topic=T.INDUSTRIE_4_0,
        title="KI in der Qualitätssicherung: Bildverarbeitung in der Serienfertigung",
        description=(
            "Kameragestützte Prüfsysteme mit künstlicher Intelligenz erkennen Oberflächenfehler "
            "zuverlässiger als das menschliche Auge. Der Kurs erklärt Funktionsweise, Datenbedarf und "
            "Grenzen solcher Systeme und zeigt an einer Demonstrationsanlage, wie ein Prüfmodell "
            "trainiert wird."
        ),
        target_group="Qualitätsmanagement, Prüftechnik und Instandhaltung",
        sessions=_weekly("2027-06-08", 2, "09:00", "16:00"),
        capacity=15,
        waitlist_limit=5,
        max_per_company=3,
    ),
    _Spec(
        slug="leichtbau-fahrzeugbau",
        node="rohr",
        kind=Kind.WORKSHOP,
        topic=T.FAHRZEUGKOMPONENTEN,
        title="Leichtbau im Fahrzeugbau: Werkstoffe, Verfahren, Kosten",
        description=(
            "Jedes eingesparte Kilogramm erhöht die Reichweite von Elektrofahrzeugen. Der Workshop "
            "vergleicht Aluminium, hochfeste Stähle und Faserverbundwerkstoffe und bewertet "
            "Fertigungsverfahren nach Kosten und Serientauglichkeit."
        ),
        target_group="Konstruktion, Arbeitsvorbereitung und Fertigungsplanung",
        sessions=(("2027-03-16", "09:00", "16:00"), ("2027-03-17", "08:30", "12:30")),
        capacity=14,
        waitlist_limit=4,
        max_per_company=3,
    ),
    _Spec(
        slug="3d-druck-praxisworkshop",
        node="rohr",
        kind=Kind.WORKSHOP,
        topic=T.FAHRZEUGKOMPONENTEN,
        title="3D-Druck für Prototypen und Kleinserien – Praxisworkshop",
        description=(
            "Im Technikum des BTZ Rohr-Kloster konstruieren und drucken die Teilnehmenden eigene Bauteile "
            "mit FDM- und SLS-Verfahren. Dabei geht es um druckgerechtes Konstruieren, Werkstoffwahl und "
            "Nacharbeit. Für Material wird eine Pauschale erhoben."
        ),
        target_group="Konstrukteurinnen und Konstrukteure, Modell- und Werkzeugbau",
        sessions=(("2027-04-21", "09:00", "16:00"),),
        capacity=10,
        waitlist_limit=5,
        max_per_company=2,
        fee_eur="49.00",
        location="BTZ Rohr-Kloster, Technikum Additive Fertigung, Kloster 1, 98530 Rohr",
    ),
    _Spec(
        slug="hochvolt-sensibilisierung",
        node="eisenach",
        kind=Kind.COURSE,
        topic=T.ELEKTRIK_ELEKTRONIK,
        title="Hochvolt-Sensibilisierung für Beschäftigte in der Fahrzeugteilefertigung",
        description=(
            "Wer in der Nähe von Hochvoltkomponenten arbeitet, muss die Gefahren kennen. Die Schulung "
            "vermittelt Grundlagen der elektrischen Gefährdung, Kennzeichnung und Verhaltensregeln nach "
            "DGUV Information 209-093. Am Ende steht eine Teilnahmebescheinigung."
        ),
        target_group="Beschäftigte in Montage, Logistik und Instandhaltung ohne elektrotechnische Ausbildung",
        sessions=(("2027-02-23", "08:00", "12:30"),),
        capacity=20,
        waitlist_limit=10,
        max_per_company=4,
        deadline_days=4,
    ),
    _Spec(
        slug="bordnetz-48-volt",
        node="eisenach",
        kind=Kind.WORKSHOP,
        topic=T.ELEKTRIK_ELEKTRONIK,
        title="Bordnetz im Wandel: 48-Volt- und Hochvoltsysteme",
        description=(
            "Mit der Elektrifizierung ändern sich Bordnetzarchitekturen, Steckverbinder und "
            "Leitungssätze grundlegend. Der Workshop gibt einen Überblick über Spannungsebenen, "
            "Normen und Prüfanforderungen und zeigt, welche Chancen sich für Zulieferer ergeben."
        ),
        target_group="Entwicklung, Prüffeld und technischer Vertrieb",
        sessions=(("2027-10-12", "09:00", "16:00"),),
        capacity=16,
        waitlist_limit=4,
    ),
    _Spec(
        slug="fachexperte-wasserstoffanwendungen-ihk",
        node="weberstedt",
        kind=Kind.CERTIFICATE_COURSE,
        topic=T.WASSERSTOFF,
        title="Fachexperte für Wasserstoffanwendungen (IHK)",
        description=(
            "Der Zertifikatslehrgang qualifiziert für Planung, Bewertung und sicheren Betrieb von "
            "Wasserstoffanwendungen in Industrie und Mobilität. Behandelt werden Erzeugung, Speicherung, "
            "Brennstoffzellen, Sicherheit und Rechtsrahmen. Der Lehrgang schließt mit einem Test und "
            "dem Zertifikat der IHK ab; die Teilnahme ist gefördert und kostenfrei."
        ),
        target_group="Ingenieurinnen und Ingenieure, Technikerinnen und Techniker, Meisterinnen und Meister",
        sessions=_ihk_hydrogen_sessions(),
        capacity=15,
        waitlist_limit=5,
        max_per_company=2,
        deadline_days=14,
        location="WaldResort Am Nationalpark Hainich, Seminarraum Buche, Am Hainich 1, 99947 Weberstedt",
    ),
    _Spec(
        slug="infoabend-wasserstoff-region",
        node="weberstedt",
        kind=Kind.INFO_EVENT,
        topic=T.WASSERSTOFF,
        title="Infoabend: Wasserstoff in der Region – Chancen für Zulieferer",
        description=(
            "Welche Wasserstoffprojekte entstehen in Thüringen, und wo können Zulieferer einsteigen? "
            "Fachleute aus Forschung und Wirtschaft berichten kurz und praxisnah. Im Anschluss ist Zeit "
            "für Fragen und Gespräche."
        ),
        target_group="Geschäftsführungen, Entwicklung und Vertrieb",
        sessions=(("2027-03-10", "18:00", "20:00"),),
        capacity=25,
        waitlist_limit=10,
        deadline_days=3,
    ),
    _Spec(
        slug="foerderprogramme-ueberblick",
        node="soemmerda",
        kind=Kind.INFO_EVENT,
        topic=T.FOERDERMITTEL,
        title="Förderprogramme für Transformation und Weiterbildung im Überblick",
        description=(
            "Bund und Land fördern Weiterbildung, Digitalisierung und neue Produkte. Die "
            "Online-Veranstaltung stellt die wichtigsten Programme vor und erklärt, wie ein Antrag "
            "erfolgreich gestellt wird."
        ),
        target_group="Geschäftsführungen, Personal- und Finanzverantwortliche",
        sessions=(("2027-01-27", "10:00", "11:30"),),
        capacity=25,
        waitlist_limit=15,
        deadline_days=2,
        location="Online (die Zugangsdaten kommen per E-Mail)",
    ),
    _Spec(
        slug="sprechstunde-foerdermittel-maerz",
        node="gotha",
        kind=Kind.CONSULTATION,
        topic=T.FOERDERMITTEL,
        title="Sprechstunde Fördermittel",
        description=(
            "In einem vertraulichen Einzelgespräch prüfen wir gemeinsam, welche Förderung für Ihr "
            "Vorhaben infrage kommt. Bringen Sie gern eine kurze Beschreibung Ihres Vorhabens mit."
        ),
        target_group="Unternehmen der Fahrzeug- und Zulieferindustrie",
        sessions=(("2027-03-04", "14:00", "15:00"),),
        capacity=1,
        max_per_company=1,
        deadline_days=2,
    ),
    _Spec(
        slug="sprechstunde-foerdermittel-april",
        node="gotha",
        kind=Kind.CONSULTATION,
        topic=T.FOERDERMITTEL,
        title="Sprechstunde Fördermittel",
        description=(
            "In einem vertraulichen Einzelgespräch prüfen wir gemeinsam, welche Förderung für Ihr "
            "Vorhaben infrage kommt. Bringen Sie gern eine kurze Beschreibung Ihres Vorhabens mit."
        ),
        target_group="Unternehmen der Fahrzeug- und Zulieferindustrie",
        sessions=(("2027-04-08", "14:00", "15:00"),),
        capacity=1,
        max_per_company=1,
        deadline_days=2,
    ),
    _Spec(
        slug="beratung-unternehmensnachfolge",
        node="eisenach",
        kind=Kind.CONSULTATION,
        topic=T.UNTERNEHMENSNACHFOLGE,
        title="Erstberatung Unternehmensnachfolge",
        description=(
            "Viele Inhaberinnen und Inhaber von Zulieferbetrieben suchen in den nächsten Jahren eine "
            "Nachfolge. Im Erstgespräch klären wir Zeitplan, Optionen und erste Schritte und vermitteln "
            "bei Bedarf weitere Fachleute."
        ),
        target_group="Inhaberinnen und Inhaber sowie mögliche Nachfolgerinnen und Nachfolger",
        sessions=(("2027-05-06", "10:00", "11:30"),),
        capacity=1,
        max_per_company=1,
        deadline_days=3,
    ),
    _Spec(
        slug="netzwerktreffen-zulieferer-westthueringen",
        node="weberstedt",
        kind=Kind.NETWORK_EVENT,
        topic=T.INNOVATION,
        title="Netzwerktreffen Zulieferer Westthüringen: Transformation gemeinsam gestalten",
        description=(
            "Unternehmen aus den Landkreisen Gotha, Unstrut-Hainich, Wartburgkreis und "
            "Schmalkalden-Meiningen stellen Transformationsprojekte vor. In Thementischen entstehen "
            "Kontakte für Kooperationen. Der Abend klingt mit einem Imbiss aus."
        ),
        target_group="Geschäftsführungen, Entwicklungs- und Innovationsverantwortliche",
        sessions=(("2027-06-17", "16:00", "20:00"),),
        capacity=25,
        waitlist_limit=15,
        max_per_company=3,
        deadline_days=7,
    ),
    _Spec(
        slug="fachkraefte-finden-und-binden",
        node="soemmerda",
        kind=Kind.WORKSHOP,
        topic=T.FACHKRAEFTESICHERUNG,
        title="Fachkräfte finden und binden: Arbeitgeberattraktivität für Zulieferer",
        description=(
            "Der Workshop zeigt, wie kleine und mittlere Zulieferer als Arbeitgeber sichtbar werden: von "
            "der Stellenanzeige über soziale Medien bis zur Einarbeitung. Die Teilnehmenden entwickeln "
            "erste Maßnahmen für ihr eigenes Unternehmen."
        ),
        target_group="Personalverantwortliche und Geschäftsführungen",
        sessions=(("2027-04-14", "09:00", "13:00"),),
        capacity=15,
        waitlist_limit=5,
        max_per_company=2,
    ),
    _Spec(
        slug="co2-bilanz-nachhaltigkeitsbericht",
        node="gotha",
        kind=Kind.WORKSHOP,
        topic=T.NACHHALTIGKEIT,
        title="CO₂-Bilanz und Nachhaltigkeitsbericht: Anforderungen der Kunden erfüllen",
        description=(
            "Fahrzeughersteller verlangen von ihren Lieferanten zunehmend CO₂-Daten und "
            "Nachhaltigkeitsnachweise. An zwei Vormittagen erstellen die Teilnehmenden eine vereinfachte "
            "CO₂-Bilanz ihres Unternehmens und lernen die wichtigsten Berichtsstandards kennen."
        ),
        target_group="Umwelt-, Energie- und Qualitätsbeauftragte",
        sessions=(("2027-09-21", "08:30", "12:30"), ("2027-09-28", "08:30", "12:30")),
        capacity=16,
        waitlist_limit=6,
        max_per_company=2,
    ),
    _Spec(
        slug="qualifizierungsbedarfe-erkennen",
        node="rohr",
        kind=Kind.WORKSHOP,
        topic=T.WEITERBILDUNG,
        title="Qualifizierungsbedarfe erkennen: Weiterbildung strategisch planen",
        description=(
            "Welche Kompetenzen braucht der Betrieb in fünf Jahren? Mit einer einfachen "
            "Qualifikationsmatrix ermitteln die Teilnehmenden Lücken und leiten daraus einen "
            "Weiterbildungsplan ab, der sich mit Fördermitteln umsetzen lässt."
        ),
        target_group="Personalentwicklung, Ausbildungsleitungen und Führungskräfte",
        sessions=(("2027-05-26", "09:00", "15:30"),),
        capacity=12,
        waitlist_limit=4,
        max_per_company=2,
    ),
    _Spec(
        slug="innovationswerkstatt-neue-geschaeftsfelder",
        node="rohr",
        kind=Kind.WORKSHOP,
        topic=T.INNOVATION,
        title="Innovationswerkstatt: neue Geschäftsfelder jenseits des Verbrenners",
        description=(
            "Mit Methoden des Design Thinking entwickeln die Teilnehmenden Ideen, wie vorhandene "
            "Fertigungskompetenz in neuen Märkten genutzt werden kann, etwa in der Medizintechnik oder "
            "der Energietechnik. Am Ende steht ein erster Geschäftsmodellentwurf."
        ),
        target_group="Geschäftsführungen, Vertrieb und Entwicklung",
        sessions=(("2027-11-09", "09:00", "16:00"), ("2027-11-10", "09:00", "13:00")),
        capacity=14,
        waitlist_limit=4,
        max_per_company=3,
    ),
)


def _sessions(slug: str, rows: tuple[SessionRow, ...], location: str) -> tuple[OfferingSession, ...]:
    return tuple(
        OfferingSession(
            session_id=session_id_for(slug, index),
            starts_at=_at(day, start),
            ends_at=_at(day, end),
            location=location,
        )
        for index, (day, start, end) in enumerate(rows)
    )


def _deadline(rows: tuple[SessionRow, ...], days_before: int) -> datetime:
    """12:00 noon, `days_before` days before the first session."""
    first_day = date.fromisoformat(rows[0][0])
    return datetime.combine(first_day - timedelta(days=days_before), time(12, 0), tzinfo=BERLIN)


def _build(spec: _Spec) -> Offering:
    return Offering(
        offering_id=offering_id_for(spec.slug),
        node_id=node_id_for(spec.node),
        kind=spec.kind,
        topic=spec.topic,
        title=spec.title,
        description=spec.description,
        target_group=spec.target_group,
        sessions=_sessions(spec.slug, spec.sessions, spec.location or _default_location(spec.node)),
        capacity=spec.capacity,
        registration_deadline=_deadline(spec.sessions, spec.deadline_days),
        fee_eur=Decimal(spec.fee_eur),
        max_per_company=spec.max_per_company,
        waitlist_limit=spec.waitlist_limit,
        status=spec.status,
        revision=1,
    )


def demo_offerings() -> tuple[Offering, ...]:
    """The demo offerings; all published except one draft."""
    return tuple(_build(spec) for spec in _SPECS)


@dataclass(frozen=True, slots=True)
class DemoCatalogue:
    nodes: tuple[Node, ...]
    offerings: tuple[Offering, ...]


def demo_catalogue() -> DemoCatalogue:
    return DemoCatalogue(nodes=demo_nodes(), offerings=demo_offerings())


# --- generated offerings (benchmarks) ----------------------------------------------------------

_GENERATED_THEMES: tuple[tuple[Topic, OfferingKind, str, str], ...] = (
    # topic, kind, title, first sentence of the description
    (
        T.ELEKTROMOBILITAET,
        Kind.COURSE,
        "Grundlagen der Elektromobilität",
        "Der Kurs erklärt Aufbau und Funktion elektrischer Antriebe und ihre Folgen für Zulieferteile.",
    ),
    (
        T.ELEKTROMOBILITAET,
        Kind.WORKSHOP,
        "Ladeinfrastruktur im Betrieb planen",
        "Der Workshop zeigt, wie Unternehmen Ladepunkte für Dienst- und Mitarbeiterfahrzeuge planen.",
    ),
    (
        T.INDUSTRIE_4_0,
        Kind.COURSE,
        "Maschinendaten erfassen und nutzen",
        "Die Teilnehmenden lernen, wie Daten aus älteren Anlagen erfasst und ausgewertet werden.",
    ),
    (
        T.INDUSTRIE_4_0,
        Kind.WORKSHOP,
        "IT-Sicherheit in der vernetzten Produktion",
        "Vernetzte Anlagen brauchen Schutz; der Workshop zeigt typische Angriffswege und Gegenmaßnahmen.",
    ),
    (
        T.FAHRZEUGKOMPONENTEN,
        Kind.WORKSHOP,
        "Faserverbundwerkstoffe in der Praxis",
        "Der Workshop vermittelt Eigenschaften und Verarbeitung von faserverstärkten Kunststoffen.",
    ),
    (
        T.FAHRZEUGKOMPONENTEN,
        Kind.COURSE,
        "Additive Fertigung für die Serie",
        "Der Kurs bewertet, wann sich 3D-Druck für Ersatzteile und Kleinserien wirtschaftlich lohnt.",
    ),
    (
        T.ELEKTRIK_ELEKTRONIK,
        Kind.COURSE,
        "Hochvolt-Sensibilisierung",
        "Die Schulung vermittelt Gefahren und Verhaltensregeln im Umfeld von Hochvoltkomponenten.",
    ),
    (
        T.ELEKTRIK_ELEKTRONIK,
        Kind.WORKSHOP,
        "Leistungselektronik verstehen",
        "Der Workshop erklärt Wechselrichter, Wandler und ihre Anforderungen an Kühlung und Aufbau.",
    ),
    (
        T.WASSERSTOFF,
        Kind.INFO_EVENT,
        "Wasserstoff für den Mittelstand",
        "Die Veranstaltung gibt einen Überblick über Wasserstofftechnik und regionale Projekte.",
    ),
    (
        T.NACHHALTIGKEIT,
        Kind.WORKSHOP,
        "Energieeffizienz in der Fertigung",
        "Der Workshop zeigt, wie Energieverbräuche gemessen und Einsparpotenziale gehoben werden.",
    ),
    (
        T.INNOVATION,
        Kind.NETWORK_EVENT,
        "Innovationsstammtisch",
        "Zulieferer, Hochschulen und Start-ups tauschen sich über neue Produktideen aus.",
    ),
    (
        T.WEITERBILDUNG,
        Kind.INFO_EVENT,
        "Weiterbildung mit Qualifizierungschancengesetz",
        "Die Veranstaltung erklärt, wie Betriebe Weiterbildung ihrer Beschäftigten fördern lassen.",
    ),
    (
        T.FACHKRAEFTESICHERUNG,
        Kind.WORKSHOP,
        "Ausbildung attraktiv gestalten",
        "Der Workshop sammelt Ideen, wie Betriebe junge Menschen für eine Ausbildung gewinnen.",
    ),
    (
        T.UNTERNEHMENSNACHFOLGE,
        Kind.CONSULTATION,
        "Beratung Unternehmensnachfolge",
        "Im Einzelgespräch klären wir die ersten Schritte einer geregelten Nachfolge.",
    ),
    (
        T.FOERDERMITTEL,
        Kind.CONSULTATION,
        "Sprechstunde Fördermittel",
        "Im Einzelgespräch prüfen wir, welche Förderprogramme für Ihr Vorhaben passen.",
    ),
)

_TITLE_SUFFIXES: tuple[str, ...] = ("Kompakt", "Einstieg", "Vertiefung", "Praxistag", "Aufbaukurs")
_TIME_SLOTS: tuple[tuple[str, str], ...] = (
    ("08:30", "12:30"),
    ("09:00", "16:00"),
    ("13:00", "17:00"),
    ("17:00", "19:30"),
)
_CLOSING_SENTENCE = "Die Inhalte orientieren sich an den Fragen der teilnehmenden Unternehmen."


def _generated_first_day(rng: random.Random) -> date:
    """A working day between mid-January and the end of November 2027."""
    day = date(2027, 1, 15) + timedelta(days=rng.randrange(320))
    weekend_shift = 7 - day.weekday() if day.weekday() >= 5 else 0  # Saturday/Sunday → Monday
    return day + timedelta(days=weekend_shift)


def _generated_sessions(rng: random.Random, kind: OfferingKind) -> tuple[SessionRow, ...]:
    first = _generated_first_day(rng)
    if kind is Kind.CONSULTATION:
        hour = rng.choice((9, 10, 11, 13, 14, 15))
        return ((first.isoformat(), f"{hour:02d}:00", f"{hour:02d}:45"),)
    count = rng.randint(2, 5) if kind in (Kind.COURSE, Kind.CERTIFICATE_COURSE) else rng.randint(1, 2)
    start, end = rng.choice(_TIME_SLOTS)
    return _weekly(first.isoformat(), count, start, end)


def _generated_offering(rng: random.Random, seed: int, index: int, nodes: tuple[Node, ...]) -> Offering:
    topic, kind, title, sentence = rng.choice(_GENERATED_THEMES)
    node_slug = rng.choice(_NODE_ROWS)[0]
    slug = f"generated:{seed}:{index}"
    rows = _generated_sessions(rng, kind)
    consultation = kind is Kind.CONSULTATION
    town = next(node.town for node in nodes if node.node_id == node_id_for(node_slug))
    return Offering(
        offering_id=offering_id_for(slug),
        node_id=node_id_for(node_slug),
        kind=kind,
        topic=topic,
        title=title if consultation else f"{title} – {rng.choice(_TITLE_SUFFIXES)} in {town}",
        description=f"{sentence} {_CLOSING_SENTENCE}",
        target_group="Beschäftigte und Führungskräfte von Automobilzulieferern",
        sessions=_sessions(slug, rows, _default_location(node_slug)),
        capacity=1 if consultation else rng.randint(8, 25),
        registration_deadline=_deadline(rows, rng.randint(2, 10)),
        fee_eur=Decimal("0.00") if rng.random() < 0.85 else Decimal(rng.choice(("25.00", "49.00", "95.00"))),
        max_per_company=1 if consultation else rng.choice((None, 2, 3, 5)),
        waitlist_limit=0 if consultation else rng.choice((0, 5, 10)),
        status=OfferingStatus.PUBLISHED,
        revision=1,
    )


def generated_offerings(n: int, seed: int) -> list[Offering]:
    """`n` further published offerings, identical for the same `seed` (ids differ between seeds)."""
    if n < 0:
        raise ValueError("n must not be negative")
    rng = random.Random(seed)
    nodes = demo_nodes()
    return [_generated_offering(rng, seed, index, nodes) for index in range(n)]
