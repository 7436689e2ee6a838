"""Training throughput, side by side in one run: the pytorch/examples DCGAN step vs ganime's `tutorial`.

    python benchmarks/throughput.py --seconds 180

Same DCGAN 64x64 network (ngf = ndf = 64, latent 128 = the tutorial preset's), same batch size, same machine,
same process. The two are timed in alternating short rounds and each figure is the median over rounds, so
load from other processes on a shared machine hits both alike.

1. reference: the training step of pytorch/examples `dcgan/main.py`, line for line (fp32, contiguous NCHW,
   Sigmoid + BCELoss, D on real then on the detached fake with two backward calls, G step reusing the fake
   batch through D with D's weight gradients computed, Adam 2e-4 / (0.5, 0.999) with its default per-tensor
   loop, `zero_grad()` and three `.item()` syncs per step). Its batches are handed over as ready float
   tensors (its DataLoader's cost is not counted; ganime's step includes its own uint8 -> float batch path).
2. ganime: `Trainer` with the tutorial preset at its fastest settings here: precision and memory layout chosen
   by `--precision auto --channels-last auto` (timed or read from the per-machine cache), threads = physical
   cores, foreach Adam, D frozen in the G step, no per-step syncs; `--compile` tries torch.compile too.

Also prints achieved conv GFLOP/s (the convolution FLOPs a step needs, counted from the layer shapes, over the
step time) and that divided by a conv peak measured in the same run (the fastest forward GFLOP/s of the
network's own conv layers and of a large 3x3 conv, in either layout). The last two lines are machine-readable:
`speedup_vs_reference: X.XX` and `peak_fraction: X.XX`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganime.config import override, preset
from ganime.data.dataset import load_dataset
from ganime.device import configure_backends, cpu_model, resolve_device, set_threads
from ganime.training.autotune import resolve_runtime
from ganime.training.trainer import Trainer


# --- the reference, as pytorch/examples dcgan/main.py writes it -----------------------------------------------
def weights_init(m: nn.Module) -> None:
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
            # state size. (nc) x 64 x 64
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ndf: int, nc: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


class Reference:
    """netG, netD, criterion and optimizers of dcgan/main.py; `step` is one iteration of its inner loop."""

    def __init__(self, nz: int, device: torch.device) -> None:
        self.nz, self.device = nz, device
        self.netG = Generator(nz, 64, 3).to(device)
        self.netG.apply(weights_init)
        self.netD = Discriminator(64, 3).to(device)
        self.netD.apply(weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=0.0002, betas=(0.5, 0.999))

    def step(self, data: list[torch.Tensor]) -> None:
        real_label, fake_label = 1, 0
        netD, netG, criterion, device, nz = self.netD, self.netG, self.criterion, self.device, self.nz
        ############################
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        # train with real
        netD.zero_grad()
        real_cpu = data[0].to(device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)

        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        # train with fake
        noise = torch.randn(batch_size, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake  # noqa: F841 - printed by main.py
        self.optimizerD.step()

        ############################
        # (2) Update G network: maximize log(D(G(z)))
        ###########################
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for generator cost
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        del D_x, D_G_z1, D_G_z2


# --- FLOP counting and the conv peak -------------------------------------------------------------------------
def conv_forward_flops(net: nn.Module, *inputs: torch.Tensor) -> list[tuple[nn.Module, float]]:
    """(layer, forward FLOPs) for every Conv2d/ConvTranspose2d in call order, for one forward on `inputs`."""
    out: list[tuple[nn.Module, float]] = []

    def hook(m: nn.Module, args: tuple, y: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        if isinstance(m, nn.ConvTranspose2d):  # each input pixel scatters a k x k x C_out patch
            macs = args[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        else:
            macs = y.numel() * k
        out.append((m, 2.0 * macs))

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        net(*inputs)
    for h in hooks:
        h.remove()
    return out


def step_flops(g_layers: list[tuple[nn.Module, float]], d_layers: list[tuple[nn.Module, float]]) -> dict[str, float]:
    """Conv FLOPs of one D + G iteration: what it needs, and what the reference executes.

    Backward of a conv costs its forward twice over (input gradient + weight gradient); the first layer of a
    net needs no input gradient when its input needs none (z; reals and detached fakes in the D step).
    """
    fg, fd = sum(f for _, f in g_layers), sum(f for _, f in d_layers)
    fg1, fd1 = g_layers[0][1], d_layers[0][1]
    g = fg + fg + (fg - fg1)  # G: forward, weight grads, input grads
    d_step = 2 * fd + 2 * fd + 2 * (fd - fd1)  # real and fake batches: forward, weight grads, input grads
    g_step_needed = fd + fd  # forward and input grads down to the image (D's weights frozen)
    return {"needed": g + d_step + g_step_needed, "reference": g + d_step + g_step_needed + fd}


def conv_peak(layers: list[tuple[nn.Module, torch.Tensor]], device: torch.device, min_seconds: float) -> float:
    """Fastest forward GFLOP/s over `layers` (each given with an input), contiguous and channels_last."""
    best = 0.0
    with torch.no_grad():
        for layer, x in layers:
            flops = conv_forward_flops(layer, x)[0][1]
            for fmt in (torch.contiguous_format, torch.channels_last):
                lyr, xi = layer.to(memory_format=fmt), x.contiguous(memory_format=fmt)
                lyr(xi)
                n, t0 = 0, time.perf_counter()
                while True:
                    lyr(xi)
                    n += 1
                    dt = time.perf_counter() - t0
                    if dt >= min_seconds and n >= 2:
                        break
                _sync(device)
                best = max(best, flops * n / (time.perf_counter() - t0) / 1e9)
            layer.to(memory_format=torch.contiguous_format)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180, help="rough bound on the whole run (default 180)")
    ap.add_argument("--batch-size", type=int, default=128, help="the tutorial's 128 by default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0 = physical cores)")
    ap.add_argument("--compile", action="store_true", help="let ganime try torch.compile (falls back if it fails)")
    ap.add_argument("--precision", default="auto", help="ganime's --precision (default auto: timed or cached)")
    ap.add_argument("--channels-last", default="auto", help="ganime's --channels-last (default auto)")
    ap.add_argument("--data", default="", help="images (default: the shipped emoji set)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    configure_backends(device)
    threads = set_threads(args.threads) if device.type == "cpu" else torch.get_num_threads()
    torch.manual_seed(0)
    B = args.batch_size
    cfg = override(
        preset("tutorial"),
        batch_size=B, precision=args.precision, channels_last=args.channels_last, compile=args.compile, **{"data.path": args.data},
    )
    dataset = load_dataset(cfg.data.path, 64, 3, cfg.data.background, None)
    runtime, info = resolve_runtime(cfg, dataset, device, threads)
    trainer = Trainer(cfg, dataset, device, Path("."), runtime)
    ref = Reference(cfg.model.z_dim, device)
    # the reference's DataLoader output: float NCHW in [-1, 1], contiguous, on the CPU
    ref_batches = [
        [trainer.loader.batch(0, i)[0].cpu().contiguous()] for i in range(min(4, trainer.loader.steps_per_epoch))
    ]

    z = torch.randn(B, cfg.model.z_dim)
    g_layers = conv_forward_flops(ref.netG, z[:, :, None, None].to(device))
    d_layers = conv_forward_flops(ref.netD, ref_batches[0][0].to(device))
    flops = step_flops(g_layers, d_layers)
    # peak candidates: the net's own conv layers at this batch, and a large 3x3 conv
    big = nn.Conv2d(256, 256, 3, 1, 1, bias=False).to(device)
    peak_layers = [(big, torch.randn(B, 256, 16, 16, device=device))]
    with torch.no_grad():
        acts: list[tuple[nn.Module, torch.Tensor]] = []
        hooks = [
            m.register_forward_pre_hook(lambda m, a: acts.append((m, a[0].detach().clone())))
            for m in (*ref.netG.modules(), *ref.netD.modules())
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
        ref.netD(ref.netG(z[:, :, None, None].to(device)))
        for h in hooks:
            h.remove()
    peak_layers += [(_copy_layer(m, device), x) for m, x in acts if x.shape[-1] >= 8]

    def ref_step(i: int) -> None:
        ref.step([ref_batches[i % len(ref_batches)][0]])

    def ganime_step(i: int) -> None:
        real, labels = trainer.loader.batch(0, i % trainer.loader.steps_per_epoch)
        trainer.train_step(real, labels)

    # warm-up (allocations, oneDNN kernel choice, torch.compile), then size the rounds to the time left
    t0 = time.perf_counter()
    ref_step(0)
    t_ref = time.perf_counter() - t0
    ganime_step(0)
    _sync(device)
    t0 = time.perf_counter()
    ganime_step(1)
    _sync(device)
    t_gan = time.perf_counter() - t0
    left = max(args.seconds - (time.perf_counter() - t_start), 10.0)
    rounds = 5
    per_round = left * 0.85 / rounds
    steps = max(1, int(per_round / 2 / max(t_ref, t_gan)))
    peak_time = max(0.05, per_round * 0.1 / (2 * len(peak_layers)))
    ref_rates, gan_rates, peaks = [], [], []
    for r in range(rounds):
        for name, fn, rates in (("reference", ref_step, ref_rates), ("ganime", ganime_step, gan_rates)):
            _sync(device)
            t0 = time.perf_counter()
            for i in range(steps):
                fn(r * steps + i)
            if name == "ganime":
                trainer.train_step(*trainer.loader.batch(0, 0))["loss_g"].item()  # count queued work
                n = steps + 1
            else:
                n = steps  # the reference syncs every step (.item())
            _sync(device)
            rates.append(n * B / (time.perf_counter() - t0))
        peaks.append(conv_peak(peak_layers, device, peak_time))
        print(
            f"round {r + 1}/{rounds}: reference {ref_rates[-1]:.1f} img/s, ganime {gan_rates[-1]:.1f} img/s, "
            f"conv peak {peaks[-1]:.1f} GFLOP/s",
            file=sys.stderr, flush=True,
        )

    ref_ips, gan_ips, peak = statistics.median(ref_rates), statistics.median(gan_rates), max(peaks)
    gan_gflops = flops["needed"] * gan_ips / B / 1e9
    ref_gflops = flops["reference"] * ref_ips / B / 1e9
    print(f"cpu: {cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {threads} threads, torch {torch.__version__}")
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    print(f"model: DCGAN 64x64, ngf = ndf = 64, latent {cfg.model.z_dim}, batch {B}; {rounds} rounds of {steps} steps each")
    print(f"ganime runtime: {runtime.label()}{', compiled' if trainer.runtime.compile else ''} ({info['source']})")
    print(f"conv GFLOP per step: needed {flops['needed'] / 1e9:.1f}, reference executes {flops['reference'] / 1e9:.1f}")
    print(f"reference (pytorch/examples dcgan/main.py): {ref_ips:8.1f} img/s  {ref_gflops:7.1f} conv GFLOP/s")
    print(f"ganime tutorial (fastest settings):          {gan_ips:8.1f} img/s  {gan_gflops:7.1f} conv GFLOP/s")
    print(f"measured conv peak (forward, best layer):    {peak:8.1f} GFLOP/s")
    print(f"reference peak fraction: {ref_gflops / peak:.2f}")
    print(f"wall time: {time.perf_counter() - t_start:.0f} s")
    print(f"speedup_vs_reference: {gan_ips / ref_ips:.2f}")
    print(f"peak_fraction: {gan_gflops / peak:.2f}")


def _copy_layer(m: nn.Module, device: torch.device) -> nn.Module:
    """A standalone copy of a conv layer (so timing it never touches the trained nets)."""
    import copy

    return copy.deepcopy(m).to(device).requires_grad_(False)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
