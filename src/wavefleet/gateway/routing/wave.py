"""The wave policy: send each request where it is predicted to finish first within the SLO.

For every healthy candidate backend the policy predicts (all in seconds, see docs/routing.md):

    batch   = min(occupied + 1, slots)                 occupied = max(engine running + waiting,
                                                                      gateway in-flight)
    wait    = max(slot wait, prefill backlog × wait_scale)
    ttft    = wait + prefill.at(uncached) + (backlog tokens + uncached) / 2048 × itl.at(batch)
              + prefill share × step_wait
    tpot    = (min(itl.at(batch) / (1 − prefill share), itl.at(batch) + 2048 × prefill s/token)
               + prefill backlog / output) × tpot_scale
    e2e     = ttft + output tokens × tpot               output = max_tokens, else the recent mean

`slot wait` is the time until a slot frees when all are taken: (occupied + 1 − slots) over the
rate at which this backend has been finishing requests (measured over 5 × ttft_slo_s), else
over `slots` per service time; with KV usage ≥ 95 % the engine's slots are its running
sequences, and a new request waits for half a finish plus those queued ahead (a prompt that
fits goes in at once); below that, no more than running / KV usage, what its cache holds at the
running mix, so requests sent since the last poll fill it before the engine reports it.
`prefill backlog` is the prefill work this gateway sent and the engine has not
finished yet (a fluid queue drained in real time); each first token bounds it (what is left is at
most the work sent after that request). Engines interleave prefill with decode (chunked prefill,
2048 tokens a step by default in vLLM and llama.cpp), so prefill work stretches every step:
`prefill share` is the fraction of the engine's time the prefill work sent recently takes (an
exponentially weighted rate over 5 × ttft_slo_s), at most 0.95; a step never carries more than one
chunk, and a first token waits for steps shared with other prompts (`step_wait` per unit of
share). Uncached tokens come from the approximate prefix index (wave_prefix.py).

Learning (wave_model.py), once for all replicas of an engine (the same configured profile and
models; without profiles, the same engine kind, models and reported KV size or slot count): the
`prefill` line from first tokens sent while the engine reported no queue and its prefill share
was low, `step_wait` from those sent under load, `wait_scale` from those sent behind a backlog;
the `itl` line from finished requests, with the prefill share over the request's life taken out;
`tpot_scale` from finished streams, measured against the model's prediction at dispatch.
A busy engine's sample pulls a line at most 3x its value; an idle engine's sample more than 2x
off rebases it. Lines never cross zero. Without a profile the lines start from the engine's own timings (its TTFT and
inter-token histograms) once it has timed 4 requests, else from an assumed engine.

An engine that reports nothing running or waiting, with nothing in flight from this gateway, is
idle: the policy's belief about its queue goes, and when the policy would shed or queue a request
while an idle backend is believed too slow for a typical request, that backend gets the request
(`probe`), once the policy has known it for 10 TTFT targets; a probe answered late doubles the
wait before the next one (up to 32 TTFT targets).

Ranking: candidates predicted to meet the SLO with headroom (ttft ≤ headroom × ttft_slo_s and
tpot ≤ headroom × tpot_slo_s) first, by e2e plus `preference_penalty_s` per step down the group's
order; then those within the shedding slack, then the rest, those whose first token comes past the
slack last; each by e2e, the last ones by e2e with decode alone (no stretch by other prompts'
prefill, the least certain term). When the best candidate misses the TTFT target by more than
`shed_slack_s` (by anything where the request waits for blocks: the engine reports a full KV
cache, or the requests in flight fill it), or its decode alone (itl.at(batch) + backlog /
output, without the prefill stretch) misses the TPOT SLO, the request is shed (429 + Retry-After)
rather than piled onto a backend. Beliefs still on an assumed profile are guesses:
while no candidate's belief is trusted nothing is shed, a best candidate on an assumed profile
gets one hopeless request at a time where trusted ones would shed it, and a guessed shortfall
sends no probe. Near-ties go to the least used backend: within `near_tie` (30 %) among
backends of the same model, within 5 % across the group's models, and within 5 ms always, but
never to one that would prefill again a prefix the best one holds, nor to one the request would
have been shed for, nor (past the TTFT target) to one whose first token comes outside the band; a small share (`explore_rate`) goes to another backend predicted to stay
within twice the TTFT target and twice the best completion time, or to an idle one whatever its
prediction once nothing has been sent there for 32 TTFT targets, so the beliefs keep learning.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from wavefleet.gateway.config import PolicyName, WaveSettings
from wavefleet.gateway.routing.base import Candidate, Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.load import capacity, kv_holds, runs_on_gpu
from wavefleet.gateway.routing.wave_model import (
    ASSUMED_PROFILES,
    MAX_SHARE,
    BackendModel,
    EngineSpeed,
    seed_profile,
    timed_enough,
)
from wavefleet.gateway.routing.wave_prefix import BLOCK_CHARS, CHARS_PER_TOKEN, PrefixIndex, block_keys

__all__ = ["Prediction", "WavePolicy"]

_LOG = logging.getLogger(__name__)
_TOKENS_PER_BLOCK = BLOCK_CHARS // CHARS_PER_TOKEN
_PENDING_LIMIT = 65536  # decisions awaiting their outcome; older ones are forgotten
_TIE_ABSOLUTE_S = 0.005
_CROSS_TIER_TIE = 0.05  # near-tie band between different models of a group
_KV_FULL = 0.95  # KV usage at which an engine admits no new sequence until one finishes
_NO_WAIT_S = 0.02  # a decision predicted to wait less than this teaches the prefill line
_SCALED_BACKLOG_S = 0.1  # a backlog at least this long teaches the wait scale
_TRUST_AFTER = 8  # finished requests after which a backend without a profile may cause shedding
_CHUNK_TOKENS = 2048  # prefill tokens per engine step: vLLM's max_num_batched_tokens, llama.cpp's batch
_SHARE_WINDOWS = 5.0  # the prefill share is a rate over this many TTFT targets
_PROBE_BACKOFF_MAX = 32.0  # TTFT targets between probes of an idle backend found slow, at most
_FAR_PROBE = 4.0  # a probe answered this many TTFT targets late: no near miss, the longest backoff
_FIRST_PROBE = 10.0  # TTFT targets after the policy meets a backend before it may probe it
_REBASE = 2.0  # an idle engine's sample this far off its line (either way) rebases the line
_PULL = 3.0  # a busy engine's sample counts at most this many times the line's value
_KV_NEAR_FULL = 0.9  # KV usage at which a request may queue before the next poll shows it
_TPOT_RATIO_MAX = 4.0  # one stream moves the TPOT correction by at most this factor (times the rate)
_LOW_SHARE = 0.2  # below this prefill share a first token shows the engine's own prefill speed


class Prediction(NamedTuple):
    """One candidate's predicted times, in seconds (a tuple: built 8 times per decision)."""

    backend: str
    ttft_s: float
    tpot_s: float
    e2e_s: float
    wait_s: float  # for a slot or behind the prefill backlog, whichever is longer
    slot_wait_s: float
    uncached_tokens: int
    batch: int
    meets_slo: bool
    share: float
    backlog_s: float
    modelled_tpot_s: float  # tpot before the learned correction (what the correction learns against)
    idle: bool  # the engine reports nothing running or waiting and the gateway has nothing there
    clean: bool  # the engine reports no queue and room in its KV cache: a first token is its speed
    hopeless: bool  # beyond the SLO by more than shedding allows
    late: bool  # its first token, beyond the SLO by more than shedding allows
    bare_e2e_s: float  # e2e with decode alone, without the stretch by other prompts' prefill


class _Pending(NamedTuple):
    backend: str
    slot_wait_s: float  # predicted wait for a slot (the engine admits nothing new before it)
    uncached_tokens: int
    batch: int
    share: float  # prefill share of the engine's time at dispatch
    backlog_s: float
    sent_work_s: float  # prefill seconds sent to the backend so far, this request's included
    idle: bool  # sent to an idle engine: its times are the engine's alone
    clean: bool  # sent while the engine reported no queue and room in its KV cache
    probe: bool  # sent to an idle backend to see what it can do
    share_area: float  # the backend's prefill share integrated over time, at dispatch
    step_wait_s: float  # the predicted wait for steps shared with other prompts
    modelled_tpot_s: float  # the predicted time per output token, before the learned correction


class WavePolicy:
    name = PolicyName.WAVE

    def __init__(self, settings: WaveSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._random = random.Random(settings.seed)
        self._models: dict[str, BackendModel] = {}
        self._speeds: dict[tuple[object, ...], EngineSpeed] = {}
        self._index = PrefixIndex(settings.prefix_index_blocks)
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    def model(self, backend: str, view: FleetView) -> BackendModel:
        """What the policy believes about `backend`, seeded on first use from its profile, else
        from the engine's own timings, else from an assumed engine of its kind."""
        model = self._models.get(backend)
        if model is None:
            config = view.backends[backend]
            snapshot = view.monitor.snapshot(backend)
            gpu = runs_on_gpu(config)
            profile = seed_profile(config, gpu)
            # replicas learn together: apart, their lines drift and the policy chases the drift
            # (docs/routing.md). Replicas: the same configured profile for the same listed models;
            # without profiles, the same engine kind, models and reported size (KV cache, slots)
            models = tuple(config.models) or snapshot.models
            size = (snapshot.kv_capacity_tokens, snapshot.slots_total)
            replicas: tuple[object, ...] = (backend,)
            if config.profile is not None and config.models:
                replicas = (
                    "profile",
                    config.kind,
                    *config.models,
                    profile.model_dump_json(exclude={"basis"}),
                )
            elif config.profile is None and models and any(size):
                replicas = ("engine", config.kind, gpu, *size, *models)
            speed = self._speeds.get(replicas)
            if speed is None:
                rate = self._settings.learning_rate
                if config.profile is None and snapshot.timings is not None and timed_enough(snapshot.timings):
                    speed = EngineSpeed.timed(snapshot.timings, profile, rate)
                else:
                    speed = EngineSpeed.seeded(profile, rate, trusted=config.profile is not None)
                self._speeds[replicas] = speed
            # a backend met seconds ago has a young belief that traffic is still correcting:
            # no probe yet
            met = self._clock()
            model = self._models[backend] = BackendModel(
                speed, last_sent=met, probe_after=met + _FIRST_PROBE * self._settings.ttft_slo_s
            )
        return model

    def predict(
        self, request: RouteRequest, view: FleetView, candidates: list[Candidate], keys: list[int], now: float
    ) -> list[Prediction]:
        settings = self._settings
        prompt = request.prompt_tokens
        window = _SHARE_WINDOWS * settings.ttft_slo_s
        ttft_target = settings.headroom * settings.ttft_slo_s
        tpot_target = settings.headroom * settings.tpot_slo_s
        ttft_limit = ttft_target + settings.shed_slack_s
        predictions: list[Prediction] = []
        for candidate in candidates:
            name = candidate.backend
            model = self.model(name, view)
            speed = model.speed
            snapshot = view.monitor.snapshot(name)
            if not speed.trusted and timed_enough(snapshot.timings):
                # the engine has timed its first requests: its figures beat the assumed profile
                assert snapshot.timings is not None
                config = view.backends[name]
                speed.adopt(
                    EngineSpeed.timed(
                        snapshot.timings, ASSUMED_PROFILES[runs_on_gpu(config)], settings.learning_rate
                    )
                )
            slots = capacity(view.backends[name], snapshot)
            occupied = (snapshot.running or 0) + (snapshot.waiting or 0)
            inflight = view.inflight.get(name, 0)
            # the engine's own metrics say it runs nothing and the gateway has nothing there:
            # whatever the policy believed was queued is gone
            idle = (
                snapshot.running == 0
                and not snapshot.waiting
                and inflight == 0
                and snapshot.breaker != "open"
            )
            if idle:
                model.forget_queue(now, window)
            if inflight > occupied:
                occupied = inflight
            kv = snapshot.kv_usage
            # with every slot taken a new request waits for one to finish; a full KV cache admits
            # nothing new until a running sequence ends, but a prompt that still fits (about half
            # of them at 95 %) goes in at once: half a finish, plus the requests queued ahead.
            # Short of full, the cache holds running / usage sequences at the running mix, and
            # what the gateway sent since the poll (in the in-flight count) fills it before the
            # engine's gauge shows it: past that, a request waits for blocks as in a full cache
            ahead = 1.0
            held = float(slots)
            kv_full = kv is not None and kv >= _KV_FULL
            if kv_full and snapshot.running and snapshot.running < slots:
                slots = snapshot.running
                held = float(slots)
                ahead = 0.5
            else:
                holds = kv_holds(snapshot)
                if holds is not None and holds < held:
                    held = holds
                    kv_full = occupied + ahead > held
            # a queue the slot count does not explain (KV nearly full, reserved room, the engine's
            # own limits) may delay the first token: such requests do not teach the prefill line
            clean = not snapshot.waiting and (kv is None or kv < _KV_NEAR_FULL)
            cached = self._index.matched(name, keys) * _TOKENS_PER_BLOCK if keys else 0
            uncached = prompt - cached if cached < prompt else 1
            batch = occupied + 1 if occupied < slots else slots
            itl = speed.itl.at(batch)
            share = model.prefill_share(now, window)
            slot_wait = 0.0
            queued = occupied + ahead - held
            if queued > 0:
                # a slot frees as a request finishes: at the rate this backend has been finishing
                # them, measured, else one service time per `held` requests, estimated
                rate = model.finish_rate(now, window)
                if rate > 0.0:
                    slot_wait = queued / rate
                else:
                    service = speed.prefill.at(speed.mean_prompt) + speed.mean_output * speed.itl.at(slots)
                    slot_wait = queued / held * service
            backlog = model.backlog_until - now
            if backlog < 0.0:
                backlog = 0.0
            wait = backlog * speed.wait_scale
            if slot_wait > wait:
                wait = slot_wait
            slope = speed.prefill.slope
            steps = ((backlog / slope if slope > 0 else 0.0) + uncached) / _CHUNK_TOKENS
            # under prefill load a prompt also waits for steps shared with others' prompts
            ttft = wait + speed.prefill.at(uncached) + steps * itl + share * speed.step_wait_s
            output = request.max_tokens or speed.mean_output
            # decode waits for the prefill chunks interleaved with it: itl / (1 - share) while the
            # engine keeps up, a full chunk per step at most
            stretched = itl / (1.0 - share)
            full_chunk = itl + _CHUNK_TOKENS * slope
            modelled = (stretched if stretched < full_chunk else full_chunk) + backlog / output
            tpot = modelled * speed.tpot_scale
            # a request is shed on TPOT only for its decode alone beyond the target: the stretch
            # by other prompts' prefill is bounded (a chunk a step), follows the prefill admitted
            # (which the TTFT limit bounds) and is the least certain term (a share estimated from
            # what was sent, a line learned with it divided out): on fleet (d) every stream
            # admitted with a stretched prediction of 0.08-0.15 s met the 0.1 s target
            decode_alone = itl + backlog / output
            # a request waiting for a full KV cache gets its first token when blocks free, and the
            # newest sequence is the first one preempted when decode runs out of blocks: such
            # predictions are uncertain (± 0.3 s on fleet (d)) and admitting them on the slack
            # keeps the cache full and the queue standing, so there the target is the limit
            limit = ttft_target if kv_full and queued > 0 else ttft_limit
            predictions.append(
                Prediction(
                    name,
                    ttft,
                    tpot,
                    ttft + output * tpot,
                    wait,
                    slot_wait,
                    uncached,
                    batch,
                    ttft <= ttft_target and tpot <= tpot_target,
                    share,
                    backlog,
                    modelled,
                    idle,
                    clean,
                    ttft > limit or decode_alone > settings.tpot_slo_s,
                    ttft > limit,
                    ttft + output * decode_alone,
                )
            )
        return predictions

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        ready = [c for c in request.candidates if view.monitor.snapshot(c.backend).healthy]
        if not ready:
            return Decision((), "none-healthy")
        settings = self._settings
        now = self._clock()
        keys = block_keys(request.prefix_text) if settings.affinity and request.prefix_text else []
        predictions = self.predict(request, view, ready, keys, now)
        penalty = settings.preference_penalty_s
        # those predicted to meet the SLO first, then those within the shedding slack, then the
        # hopeless, the late ones last (a slow stream predicted from a guessed prefill share is
        # weaker evidence than a first token seconds away); each by completion time, the late
        # ones without that stretch: past capacity it is the least certain term and the largest
        # (GPU streams predicted at 0.2-0.6 s a token at a cold start), and it would rank an
        # engine on an assumed profile whose first token is ten seconds away before GPUs a
        # second late, and send it the request the GPUs would shed
        order = sorted(
            range(len(ready)),
            key=lambda i: (
                not predictions[i].meets_slo,
                predictions[i].hopeless,
                predictions[i].late,
                (predictions[i].bare_e2e_s if predictions[i].late else predictions[i].e2e_s)
                + penalty * ready[i].preference,
            ),
        )
        scores = {p.backend: p.e2e_s for p in predictions}
        best = predictions[order[0]]
        best_trusted = self._models[best.backend].speed.trusted
        if not best.meets_slo and best_trusted:
            # about to shed or queue (on a belief, not a guess): an idle backend gets this request,
            # whatever its prediction, so a belief that keeps it idle meets the engine's real speed
            probe = self._probe_target(order, predictions, now)
            if probe is not None:
                order.remove(probe)
                order.insert(0, probe)
                return self._decide(request, ready, order, predictions, scores, keys, now, "probe")
        if (
            not best.meets_slo
            and settings.shed
            and best.hopeless
            # never on guesses alone: while no belief is trusted nothing is shed; a best on an
            # assumed profile where trusted candidates would shed gets one request at a time, so
            # it can show what it can do without taking a flood
            and (
                best_trusted
                or (
                    view.inflight.get(best.backend, 0) > 0
                    and any(self._models[p.backend].speed.trusted for p in predictions)
                )
            )
            # now and then admit anyway, so a backend believed too slow can prove otherwise
            and not (settings.explore_rate and self._random.random() < settings.explore_rate)
        ):
            retry = min(10.0, max(0.5, best.ttft_s - settings.ttft_slo_s))
            _LOG.debug("wave %s: shed, retry in %.2fs; %s", request.request_id, retry, scores)
            return Decision((), "shed", scores, retry_after_s=retry)
        first, reason = self._pick(order, predictions, ready, penalty, now)
        if first != order[0]:
            order.remove(first)
            order.insert(0, first)
        chosen = predictions[first]
        if reason == "predicted":
            if not chosen.meets_slo:
                reason = "over-slo"
            elif keys and chosen.uncached_tokens < request.prompt_tokens // 2:
                reason = "affinity"
        return self._decide(request, ready, order, predictions, scores, keys, now, reason)

    def _decide(
        self,
        request: RouteRequest,
        ready: list[Candidate],
        order: list[int],
        predictions: list[Prediction],
        scores: dict[str, float],
        keys: list[int],
        now: float,
        reason: str,
    ) -> Decision:
        ranked = tuple(ready[i] for i in order)
        chosen = predictions[order[0]]
        # exploring an idle backend is a probe too: its answer shows what the engine can do
        probe = reason == "probe" or (reason == "explore" and chosen.idle)
        self._dispatched(request, chosen, keys, now, probe)
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug(
                "wave %s -> %s (%s): %s",
                request.request_id,
                chosen.backend,
                reason,
                Decision(ranked, reason, scores).explanation(),
            )
        return Decision(ranked, reason, scores)

    def _probe_target(self, order: list[int], predictions: list[Prediction], now: float) -> int | None:
        """The idle candidate, best predicted first, that the policy believes too slow for a
        typical request and that may be probed now, if any. An idle backend that would serve a
        typical request in time is not avoided: only this request is too much for it."""
        settings = self._settings
        for i in order:
            p = predictions[i]
            model = self._models[p.backend]
            if not p.idle or model.probe_after > now:
                continue
            speed = model.speed
            itl = speed.itl.at(1)
            ttft = speed.prefill.at(speed.mean_prompt) + speed.mean_prompt / _CHUNK_TOKENS * itl
            if (
                ttft > settings.headroom * settings.ttft_slo_s
                or itl > settings.headroom * settings.tpot_slo_s
            ):
                return i
        return None

    def _pick(
        self,
        order: list[int],
        predictions: list[Prediction],
        ready: list[Candidate],
        penalty: float,
        now: float,
    ) -> tuple[int, str]:
        """The index to send to first: the best, a less used near-tie, or now and then an explorer."""
        if len(order) == 1:
            return order[0], "predicted"
        best = order[0]
        models = self._models
        if self._settings.explore_rate and self._random.random() < self._settings.explore_rate:
            # only where the request would still stand a chance: exploring must not cost the SLO
            # nor hold the request much longer than the best would (a slow engine's answer is late);
            # an idle backend whatever its prediction (a wrong belief is what would keep it idle)
            # once nothing has been sent there for a while, and unless a probe found it slow lately
            limit = 2.0 * self._settings.headroom * self._settings.ttft_slo_s
            slowest = 2.0 * predictions[best].e2e_s
            forgotten = now - _PROBE_BACKOFF_MAX * self._settings.ttft_slo_s
            others = [
                i
                for i in order[1:]
                if (predictions[i].ttft_s <= limit and predictions[i].e2e_s <= slowest)
                or (
                    predictions[i].idle
                    and models[predictions[i].backend].probe_after <= now
                    and models[predictions[i].backend].last_sent <= forgotten
                )
            ]
            if others:
                return self._random.choice(others), "explore"
        top = predictions[best]
        ttft_target = self._settings.headroom * self._settings.ttft_slo_s
        tier = ready[best].preference
        score = top.e2e_s + penalty * tier
        # replicas of one model (same place in the group) are equal within `near_tie`: their
        # learned lines drift apart by a few percent, and taking turns beats chasing the drift;
        # other models must be within _CROSS_TIER_TIE to share the load
        widest = score * (1 + max(self._settings.near_tie, _CROSS_TIER_TIE)) + _TIE_ABSOLUTE_S
        pick = best
        for i in order[1:]:
            p = predictions[i]
            candidate_score = p.e2e_s + penalty * ready[i].preference
            if p.meets_slo != top.meets_slo or candidate_score > widest:
                break
            band = self._settings.near_tie if ready[i].preference == tier else _CROSS_TIER_TIE
            if candidate_score > score * (1 + band) + _TIE_ABSOLUTE_S:
                continue
            if p.uncached_tokens > top.uncached_tokens + _TOKENS_PER_BLOCK:
                continue  # a near-tie never gives up a cached prefix: affinity wins over turns
            # nor goes where the request would have been shed, or where its first token would
            # come much later (long answers make completion times alike while first tokens
            # differ by seconds)
            if p.hopeless and not top.hopeless:
                continue
            if p.ttft_s > ttft_target and p.ttft_s > top.ttft_s * (1 + band) + _TIE_ABSOLUTE_S:
                continue
            if models[p.backend].dispatched < models[predictions[pick].backend].dispatched:
                pick = i
        return pick, "predicted"

    def _dispatched(
        self, request: RouteRequest, chosen: Prediction, keys: list[int], now: float, probe: bool
    ) -> None:
        model = self._models[chosen.backend]
        model.dispatched += 1
        model.last_sent = now
        if probe:  # no second probe before this one has answered, or its backoff has passed
            if model.probe_backoff_s <= 0.0:
                model.probe_backoff_s = self._settings.ttft_slo_s
            model.probe_after = now + model.probe_backoff_s
        start = model.backlog_until if model.backlog_until > now else now
        work = chosen.uncached_tokens * model.speed.prefill.slope
        model.backlog_until = start + work
        model.sent_work_s += work
        model.add_prefill_work(now, work, _SHARE_WINDOWS * self._settings.ttft_slo_s)
        if keys:
            self._index.add(chosen.backend, keys)
        if request.request_id:
            pending = self._pending
            pending[request.request_id] = _Pending(
                chosen.backend,
                chosen.slot_wait_s,
                chosen.uncached_tokens,
                chosen.batch,
                chosen.share,
                chosen.backlog_s,
                model.sent_work_s,
                chosen.idle,
                chosen.clean,
                probe,
                model.share_area(now, _SHARE_WINDOWS * self._settings.ttft_slo_s),
                chosen.share * model.speed.step_wait_s,
                chosen.modelled_tpot_s,
            )
            if len(pending) > _PENDING_LIMIT:
                pending.popitem(last=False)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        pending = self._pending.get(request.request_id)
        model = self._models.get(backend)
        if pending is None or model is None or pending.backend != backend:
            return
        speed = model.speed
        # engines prefill oldest first: this first token means the prefill sent before it is
        # done, so what is left is at most the work sent since. Without this bound a prefill line
        # learned too slow keeps the backlog growing, every request then counts as queued (so the
        # line is never corrected) and the backend looks busy while it idles
        now = self._clock()
        bound = now + model.sent_work_s - pending.sent_work_s
        if model.backlog_until > bound:
            model.backlog_until = bound
        if pending.probe:
            target = self._settings.headroom * self._settings.ttft_slo_s
            self._probed(model, now, ttft_s <= target, far=ttft_s > _FAR_PROBE * target)
        if pending.idle:
            # nothing else ran on the engine: a time far off the line means the line is wrong
            # (learned from queued requests, say), so it gives way at once rather than by 10 %
            expected = speed.prefill.at(pending.uncached_tokens)
            if ttft_s * _REBASE < expected or ttft_s > _REBASE * expected:
                speed.prefill.rebase(float(pending.uncached_tokens), ttft_s)
                return
        if pending.slot_wait_s >= _NO_WAIT_S or not pending.clean:
            return  # it waited for a slot or may have queued: that is not the engine's speed
        expected = speed.prefill.at(pending.uncached_tokens)
        rate = self._settings.learning_rate
        if pending.backlog_s < _NO_WAIT_S and pending.share < _LOW_SHARE:
            # one sample pulls the line up by a bounded step: a queue the policy did not see
            # must not teach it a slow engine
            speed.prefill.observe(float(pending.uncached_tokens), min(ttft_s, _PULL * expected))
            return
        if pending.backlog_s < _NO_WAIT_S:
            # busy prefilling others' prompts, the engine answers after steps it shares with
            # them, whatever this prompt's length: that teaches the step wait, not the line
            # (which sizes the backlog and the share)
            extra = (ttft_s - expected) / pending.share
            extra = min(max(extra, 0.0), _PULL * self._settings.ttft_slo_s)
            speed.step_wait_s += rate * (extra - speed.step_wait_s)
            return
        if pending.backlog_s < _SCALED_BACKLOG_S:
            return  # a ratio over a few milliseconds of backlog is mostly noise from shared steps
        waited = ttft_s - expected - pending.step_wait_s
        ratio = min(10.0, max(0.1, waited / pending.backlog_s))
        speed.wait_scale = speed.wait_scale ** (1 - rate) * ratio**rate

    def _probed(self, model: BackendModel, now: float, fast: bool, far: bool = False) -> None:
        """A probe answered: fast, the backend may be probed whenever idle; slow, twice as late;
        far beyond the target (an engine that cannot meet the SLO at all), as late as it gets."""
        base = self._settings.ttft_slo_s
        if fast:
            model.probe_backoff_s = base
            model.probe_after = now
        else:
            longest = _PROBE_BACKOFF_MAX * base
            model.probe_backoff_s = longest if far else min(longest, 2.0 * max(base, model.probe_backoff_s))
            model.probe_after = now + model.probe_backoff_s

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        pending = self._pending.pop(request.request_id, None)
        model = self._models.get(backend)
        if pending is None or model is None or pending.backend != backend:
            return
        model.add_finish(self._clock(), _SHARE_WINDOWS * self._settings.ttft_slo_s)
        if not outcome.ok:
            if pending.probe and outcome.ttft_s is None:  # failed before its first token
                self._probed(model, self._clock(), fast=False)
            return
        speed = model.speed
        rate = self._settings.learning_rate if speed.finished else 1.0
        speed.finished += 1
        if speed.finished >= _TRUST_AFTER:
            speed.trusted = True
        speed.mean_prompt += rate * (pending.uncached_tokens - speed.mean_prompt)
        if outcome.completion_tokens > 0:
            speed.mean_output += rate * (outcome.completion_tokens - speed.mean_output)
        if outcome.completion_tokens >= 2:
            window = _SHARE_WINDOWS * self._settings.ttft_slo_s
            if outcome.duration_s > 0:  # the prefill share over the request's life, not at dispatch
                lived = (model.share_area(self._clock(), window) - pending.share_area) / outcome.duration_s
                share = min(MAX_SHARE, max(0.0, lived))
            else:
                share = pending.share
            first = outcome.ttft_s
            if first is None:  # not streamed: take the prefill from the model
                wait = max(pending.slot_wait_s, pending.backlog_s * speed.wait_scale)
                first = wait + speed.prefill.at(pending.uncached_tokens)
            tpot = (outcome.duration_s - first) / (outcome.completion_tokens - 1)
            if outcome.ttft_s is not None and pending.modelled_tpot_s > 0.0:
                # what the model misses (a prefill share it under- or over-counts, chunks shared
                # by several prompts, a line learned in another load): the measured stream
                # against the model's prediction corrects every prediction of this engine
                ratio = min(_TPOT_RATIO_MAX, max(1.0 / _TPOT_RATIO_MAX, tpot / pending.modelled_tpot_s))
                learning = self._settings.learning_rate
                speed.tpot_scale = speed.tpot_scale ** (1 - learning) * ratio**learning
            # the line holds decode alone: take out what the prediction adds for prefill work
            alone = (tpot - pending.backlog_s / outcome.completion_tokens) * (1.0 - share)
            expected = speed.itl.at(pending.batch)
            if pending.idle and (alone * _REBASE < expected or alone > _REBASE * expected):
                speed.itl.rebase(float(pending.batch), alone)
            else:
                speed.itl.observe(float(pending.batch), min(alone, _PULL * expected))
