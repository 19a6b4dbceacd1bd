"""Short everyday narratives from scripts; the completion task picks the ending that fits (HellaSwag analog).

    Sara was very hungry. She went to the kitchen. She found some bread and cheese. | She made a sandwich and ate it.

A script is a situation, three events and an ending, each in two phrasings. Wrong endings come from
other scripts, told about a person of the same gender, so grammar does not give the answer away: only
knowing which events go with which ending does. Eval items come in counterbalanced groups (see
`Stories.items`), so a model that ignores the story scores chance exactly. Scripts are drawn
Zipf-style, so common situations are learned first and rare ones later: a smooth, knowledge-like
ability.
"""

from __future__ import annotations

import numpy as np

from losslens.world import lexicon as lex
from losslens.world.genres.base import Doc, Genre, TaskInfo, Unit
from losslens.world.sampling import KB, Popularity, rng_for

NAMES = lex.FEMALE_NAMES + lex.MALE_NAMES
N_FEMALE = len(lex.FEMALE_NAMES)

# (situation variants, (event 1 variants, event 2 variants, event 3 variants), ending variants)
SCRIPTS = (
    (("{N} was very hungry.", "{N} had not eaten all day."),
     (("{P} went to the kitchen.", "{P} walked into the kitchen."),
      ("{P} found some bread and cheese.", "{P} took bread and cheese from the shelf."),
      ("{P} cut a few slices.", "{P} sliced the bread.")),
     ("{P} made a sandwich and ate it.", "{P} ate a big sandwich at the table.")),
    (("Dark clouds filled the sky above {N}.", "{N} heard thunder in the distance."),
     (("{P} looked out of the window.", "{P} checked the sky."),
      ("The first drops began to fall.", "It started to rain."),
      ("{P} still had to go to the shop.", "{P} needed to go out anyway.")),
     ("{P} took an umbrella before leaving.", "{P} grabbed {his} umbrella and raincoat.")),
    (("{N} was exhausted after a long day.", "{N} could barely keep {his} eyes open."),
     (("{P} brushed {his} teeth.", "{P} washed {his} face."),
      ("{P} put on {his} pajamas.", "{P} changed into {his} pajamas."),
      ("{P} turned off the light.", "{P} switched off the lamp.")),
     ("{P} fell asleep as soon as {p} lay down.", "{P} went to bed and slept until morning.")),
    (("It was the birthday of {N}'s best friend.", "{N} was invited to a birthday party."),
     (("{P} bought a present.", "{P} chose a gift at the store."),
      ("{P} wrapped it in bright paper.", "{P} tied a ribbon around the gift."),
      ("{P} went to the party.", "{P} arrived at the party on time.")),
     ("{P} sang happy birthday with the other guests.", "Everyone cheered when the cake was cut.")),
    (("The chain of {N}'s bike broke.", "{N}'s bike chain snapped on the way home."),
     (("{P} pushed the bike home.", "{P} wheeled the bike back home."),
      ("{P} got out {his} toolbox.", "{P} found {his} tools in the shed."),
      ("{P} bought a new chain.", "{P} ordered a new chain.")),
     ("{P} fixed the bike and rode it again.", "Soon the bike was working again.")),
    (("{N}'s car was covered in mud.", "{N}'s car was very dirty after the trip."),
     (("{P} filled a bucket with soapy water.", "{P} fetched a bucket and a sponge."),
      ("{P} scrubbed the doors and the roof.", "{P} washed every window."),
      ("{P} rinsed it with the hose.", "{P} sprayed it with clean water.")),
     ("The car was shiny and clean again.", "{P} dried the car and it looked new.")),
    (("{N} had a big exam the next day.", "{N}'s final exam was tomorrow."),
     (("{P} opened {his} notes.", "{P} took out {his} textbook."),
      ("{P} studied until late at night.", "{P} read every chapter twice."),
      ("{P} went to school early.", "{P} sat down in the exam room.")),
     ("{P} passed the exam with a good grade.", "{P} answered every question and passed.")),
    (("{N} was shivering in the cold room.", "{N} felt cold all evening."),
     (("{P} closed the window.", "{P} shut the door to the garden."),
      ("{P} put on a warm sweater.", "{P} pulled on a thick sweater."),
      ("{P} brought wood from the shed.", "{P} carried logs to the fireplace.")),
     ("{P} lit a fire and warmed up.", "{P} sat by the fire until {p} was warm.")),
    (("{N} could not find {his} keys.", "{N}'s keys were missing."),
     (("{P} searched all the drawers.", "{P} looked through every drawer."),
      ("{P} checked under the sofa.", "{P} looked behind the cushions."),
      ("{P} retraced {his} steps.", "{P} thought about where {p} had been.")),
     ("{P} finally found them in {his} coat pocket.", "The keys were in {his} coat pocket all along.")),
    (("{N} wanted to grow tomatoes.", "{N} decided to plant a vegetable garden."),
     (("{P} bought a packet of seeds.", "{P} got seeds from a neighbor."),
      ("{P} planted them in rich soil.", "{P} dug small holes and planted the seeds."),
      ("{P} watered them every day.", "{P} watered the garden each morning.")),
     ("By summer, the plants were full of red tomatoes.", "{P} picked ripe red tomatoes in August.")),
    (("{N} went fishing at the lake.", "{N} took {his} fishing rod to the river."),
     (("{P} put a worm on the hook.", "{P} baited the hook."),
      ("{P} cast the line into the water.", "{P} threw the line far out."),
      ("{P} waited quietly for an hour.", "{P} sat still and waited.")),
     ("{P} caught a large fish.", "Suddenly a big fish bit and {p} pulled it in.")),
    (("{N} was thirsty after the long run.", "{N} finished {his} run on a hot afternoon."),
     (("{P} went straight to the kitchen.", "{P} hurried inside."),
      ("{P} took a glass from the cupboard.", "{P} found a clean glass."),
      ("{P} opened the tap.", "{P} let the water run cold.")),
     ("{P} drank a tall glass of cold water.", "{P} drank the water in one go.")),
    (("{N}'s hair had grown too long.", "{N}'s hair kept falling into {his} eyes."),
     (("{P} went to the barber.", "{P} walked to the hair salon."),
      ("{P} sat down in the big chair.", "{P} waited for {his} turn."),
      ("The barber picked up the scissors.", "The barber asked how short to cut it.")),
     ("{P} left with a short, neat haircut.", "{P} looked in the mirror at {his} new haircut.")),
    (("{N}'s phone battery was almost empty.", "{N}'s phone was about to die."),
     (("{P} looked for the charger.", "{P} found the cable in {his} bag."),
      ("{P} plugged it into the wall.", "{P} connected the phone to the socket."),
      ("{P} waited for an hour.", "{P} left it on the table for a while.")),
     ("Soon the phone was fully charged.", "The battery was full again.")),
    (("{N} decided to bake a cake.", "{N} wanted to make a cake for dessert."),
     (("{P} mixed flour, sugar and eggs.", "{P} stirred the butter and sugar together."),
      ("{P} poured the batter into a pan.", "{P} filled the tin with batter."),
      ("{P} put it in the hot oven.", "{P} baked it for forty minutes.")),
     ("{P} took a golden cake out of the oven.", "The cake rose and smelled wonderful.")),
    (("{N}'s clothes were all dirty.", "{N} had no clean shirts left."),
     (("{P} gathered the laundry.", "{P} collected the dirty clothes."),
      ("{P} put them in the washing machine.", "{P} loaded the washer."),
      ("{P} added soap and started it.", "{P} poured in detergent and pressed start.")),
     ("{P} hung the clean clothes out to dry.", "Later {p} folded the clean, dry clothes.")),
    (("{N} had to visit {his} aunt in another town.", "{N} planned a trip to see {his} aunt."),
     (("{P} bought a ticket at the station.", "{P} got a ticket from the machine."),
      ("{P} waited on the platform.", "{P} stood by the tracks."),
      ("The train pulled into the station.", "{P} heard the train coming.")),
     ("{P} boarded the train and found a seat.", "{P} got on the train and sat by the window.")),
    (("Snow fell all night outside {N}'s house.", "{N} woke up to a white garden."),
     (("{P} put on {his} boots.", "{P} pulled on {his} gloves and hat."),
      ("{P} ran outside.", "{P} went out into the yard."),
      ("{P} rolled a big ball of snow.", "{P} packed the snow together.")),
     ("{P} built a snowman in the yard.", "Soon a snowman with a carrot nose stood outside.")),
    (("{N} had a terrible toothache.", "{N}'s tooth hurt all night."),
     (("{P} called the dentist.", "{P} made an appointment with the dentist."),
      ("{P} sat in the waiting room.", "{P} waited nervously for {his} name."),
      ("The dentist looked at the tooth.", "The dentist examined {his} mouth.")),
     ("The dentist fixed the tooth and the pain went away.", "After the filling, the pain was gone.")),
    (("{N} wanted to paint {his} bedroom blue.", "{N} was tired of the white walls in {his} room."),
     (("{P} bought two cans of blue paint.", "{P} picked a blue paint at the store."),
      ("{P} moved the furniture away from the walls.", "{P} covered the floor with old sheets."),
      ("{P} opened the paint and took a brush.", "{P} dipped a roller in the paint.")),
     ("By evening the walls were bright blue.", "The room looked fresh in its new blue color.")),
    (("{N} wanted something new to read.", "{N} had finished all {his} books."),
     (("{P} walked to the library.", "{P} went to the town library."),
      ("{P} browsed the shelves.", "{P} looked through the new arrivals."),
      ("{P} showed {his} library card.", "{P} went to the front desk.")),
     ("{P} borrowed a novel and read it at home.", "{P} took three books home to read.")),
    (("{N}'s dog was waiting by the door.", "{N}'s dog wanted to go outside."),
     (("{P} took the leash from the hook.", "{P} clipped on the leash."),
      ("{P} walked to the park.", "{P} headed toward the park."),
      ("{P} let the dog off the leash.", "{P} unclipped the leash at the gate.")),
     ("The dog ran happily across the grass.", "The dog chased a ball across the field.")),
    (("It was a hot, sunny day, so {N} went to the beach.", "{N} spent the summer day at the beach."),
     (("{P} put on sunscreen.", "{P} rubbed lotion on {his} arms."),
      ("{P} spread a towel on the sand.", "{P} found a spot near the water."),
      ("{P} walked to the edge of the sea.", "{P} ran across the hot sand.")),
     ("{P} swam in the cool sea.", "{P} dove into the waves.")),
    (("{N} woke up with a fever.", "{N} felt sick in the morning."),
     (("{P} stayed in bed.", "{P} called in sick to work."),
      ("{P} drank hot tea with honey.", "{P} took some medicine."),
      ("{P} slept most of the day.", "{P} rested under a thick blanket.")),
     ("After a few days of rest, {p} felt better.", "By the weekend {p} was healthy again.")),
)


def _person(text: str, name: str, female: bool) -> str:
    he, his = ("she", "her") if female else ("he", "his")
    return text.format(N=name, P=he.capitalize(), p=he, his=his)


class Stories(Genre):
    name = "stories"
    task = TaskInfo("completion", "multiple_choice", "acc",
                    "Pick the ending that fits a short everyday story (HellaSwag analog).")
    guess_bytes = 180

    def __init__(self, world):
        super().__init__(world)
        self.order = rng_for(world.cfg.seed, KB, 2).permutation(len(SCRIPTS))  # popularity rank -> script
        self.popularity = Popularity(len(SCRIPTS), world.cfg.zipf_exponent)

    def units(self, rng, n, evaluating=False):
        k = self.cfg.events
        script = self.order[self.popularity.draw(rng, n, evaluating)]
        variant = rng.integers(2, size=(n, k + 2))   # situation, events, ending
        name = rng.integers(len(NAMES), size=n)
        out = []
        for i in range(n):
            situation, events, endings = SCRIPTS[script[i]]
            v = variant[i]
            female = bool(name[i] < N_FEMALE)
            parts = [situation[v[0]]] + [events[j][v[1 + j]] for j in range(k)]
            context = _person(" ".join(parts), NAMES[name[i]], female)
            ending = _person(endings[v[k + 1]], NAMES[name[i]], female)
            out.append(Unit(context, (context, ending, int(script[i]), female)))
        return out

    def render_doc(self, units, rng):
        context, ending = units[0].data[:2]
        return Doc(f"{context} {ending}")

    def items(self, rng, n):
        """Items in counterbalanced groups of `options`: the stories of one group share a gender and
        have distinct scripts, and every item of the group offers the same endings in the same order,
        each its own story's gold once. So a model blind to the story (one that prefers some endings,
        short ones say, or some positions, or both) scores exactly chance on every whole group; only
        reading the story beats it. Without this, the endings a
        200-item sample happens to favour put a context-free model a few points off chance."""
        k = self.cfg.options
        want = -(-n // k)                       # whole groups; the last is cut to give n items
        open_groups: dict[bool, list[list[Unit]]] = {False: [], True: []}
        groups: list[list[Unit]] = []
        for u in self._take(rng, 2 * want * k, heldout=True, distinct=True):
            script, female = u.data[2], u.data[3]
            group = next((g for g in open_groups[female] if all(v.data[2] != script for v in g)), None)
            if group is None:
                group = []
                open_groups[female].append(group)
            group.append(u)
            if len(group) == k:
                open_groups[female].remove(group)
                groups.append(group)
                if len(groups) == want:
                    break
        return [item for g in groups for item in self._group_items(g, rng)][:n]

    @staticmethod
    def _group_items(group: list[Unit], rng) -> list[dict]:
        # One shuffled list of the group's endings, shown unchanged in every item of the group: a
        # model that does not read the story sees the same options every time, so whatever it picks
        # (by ending, by position or both) is the gold of exactly one item.
        order = rng.permutation(len(group))
        choices = [" " + group[j].data[1] for j in order]
        gold_at = np.argsort(order)          # where each story's own ending sits in `choices`
        return [{"context": u.data[0], "choices": list(choices), "gold": int(gold_at[i])}
                for i, u in enumerate(group)]

    def item_group(self):
        return self.cfg.options

    def num_choices(self):
        return self.cfg.options

