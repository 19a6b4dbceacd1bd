"""Word lists the world is built from. ASCII only, so characters and bytes coincide.

Every value a task asks for is one word (a city, a profession, a pet, ...) so that answers are short
and exact match is meaningful. Lists are fixed; what varies with the seed is who gets which value
and how often each entity is mentioned.
"""

FEMALE_NAMES = """Ada Alice Anna Beth Clara Dora Edith Elena Emma Eva Fiona Grace Hana Helen Ida Irene Iris
Jane Julia Karen Kate Laura Lena Lily Lucy Maria Marta Mia Mila Nadia Nina Nora Olga Paula Rosa Ruth Sara
Sofia Tara Vera Wendy Yara Zoe Alma Bella Cora Daisy Ella Flora Gina Hilda Inga Joy Leah Maya Nell Opal
Petra Rita""".split()

MALE_NAMES = """Adam Alan Ben Carl Dan David Emil Eric Felix Frank George Hans Hugo Ian Ivan Jack Jonas
Karl Leo Liam Luke Marco Max Nick Noah Omar Oscar Owen Paul Peter Ravi Rex Sam Simon Tom Victor Walter
Yusuf Abel Boris Caleb Dean Elias Finn Glen Henry Igor Jude Kurt Lars Milo Nils Otto Pablo Rafael Seth
Theo Umar Vito""".split()

SURNAMES = """Abbot Acker Adler Baker Barlow Becker Bishop Blake Bloom Brandt Brooks Burke Carver Castro
Chen Clark Cole Cooper Crane Cross Dalton Day Dorsey Drake Dunn Eaton Ellis Engel Evans Fabian Farley Fenn
Fischer Fleming Ford Foster Frost Garcia Gill Glass Graves Green Gross Hale Hart Hayes Holt Hopper Hughes
Hunt Ingram Irving Jansen Jensen Joyce Kane Keller Kemp Klein Knox Kovac Lamb Lane Larsen Lind Lowe Lund
Mann Marsh Mason Meyer Miles Moss Nash Neal Noble Novak Olsen Ortiz Parker Pike Price Quinn Reed Reyes
Rhodes Rowe Sato Shaw Silva Stone Strand Swift Tanaka Thorne Todd Tucker Unger Vance Vogel Wade Walsh Ward
Webb Weiss West Wolfe Wood Wright Young Zeller Berg Dahl Falk Haas Kahn Moen Roth Sand Vik Yates Zorn""".split()

PROFESSIONS = """baker carpenter nurse pilot painter farmer teacher lawyer doctor sailor tailor potter chemist
architect librarian dentist engineer jeweler florist butcher fisher miner poet singer judge banker gardener
weaver brewer mason""".split()

INSTRUMENTS = """violin cello flute piano harp drum trumpet oboe guitar banjo clarinet tuba lute accordion
harmonica saxophone viola bassoon mandolin xylophone""".split()

PETS = """cat dog parrot rabbit hamster tortoise goldfish ferret canary lizard goat pony owl snake frog duck
hedgehog pigeon mouse crab""".split()

PRODUCTS = """glassware cheese silk pottery wine clocks salt wool honey paper olives copper lace rope soap tea
leather marble timber apples""".split()

# Syllables for made-up place names (cities and countries), so that place names carry no prior meaning.
ONSETS = "b br c d dr f g gr h k kl l m n p pr r s st t tr v w z".split()
VOWELS = "a e i o u ai ei ou".split()
CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "nd", "rk"]
CITY_SUFFIXES = "holm burg dale ford wick ton mere stad vik".split()
COUNTRY_SUFFIXES = "ia and ora istan ana ovia".split()

# --- reading comprehension: a trip, told in a few sentences ------------------------------------------
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
TRANSPORTS = "train bus boat bicycle tram ferry car horse".split()
COLORS = "red blue green yellow black white brown purple orange grey".split()
ITEMS = "kettle lamp scarf hat basket clock mirror rug vase teapot umbrella bowl".split()
VENUES = "station market bakery harbor museum library park cafe bridge square".split()

# --- word problems ----------------------------------------------------------------------------------
COUNTABLES = "apples marbles coins stamps shells pencils cookies books stickers cards buttons eggs".split()

# --- coreference: objects with one fixed property; each row is (adjective, objects) of a contrast pair --
PROPERTY_PAIRS = [
    (("heavy", "anvil piano boulder safe anchor wardrobe"), ("light", "feather leaf balloon napkin straw ribbon")),
    (("hot", "stove kettle oven radiator toaster campfire"),
     ("cold", "icicle snowball freezer glacier popsicle igloo")),
    (("sharp", "knife needle razor thorn axe nail"), ("soft", "pillow cushion sponge blanket scarf mitten")),
    (("sweet", "cake candy honey syrup fudge cookie"), ("sour", "lemon lime vinegar pickle grapefruit rhubarb")),
    (("loud", "drum siren trumpet whistle horn bell"), ("quiet", "slipper candle snowflake moth carpet cotton")),
]
