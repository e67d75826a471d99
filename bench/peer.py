"""The reference peer: the classic PyTorch char-LSTM notebook ("Character-Level LSTM in PyTorch",
Udacity's deep-learning-v2-pytorch), re-implemented as it is written there, as the baseline the
benchmarks compare charrnn with in the same process.

Batches are numpy arrays one-hot encoded on the host at every step; the model is fp32
nn.LSTM → dropout → nn.Linear; sampling feeds one character at a time through numpy and draws among
the top 5 with np.random.choice.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def one_hot_encode(arr, n_labels):
    one_hot = np.zeros((arr.size, n_labels), dtype=np.float32)
    one_hot[np.arange(one_hot.shape[0]), arr.flatten()] = 1.0
    return one_hot.reshape((*arr.shape, n_labels))


def get_batches(arr, batch_size, seq_length):
    """The notebook's generator: (x, y) windows of batch_size rows × seq_length columns."""
    batch_size_total = batch_size * seq_length
    n_batches = len(arr) // batch_size_total
    arr = arr[: n_batches * batch_size_total].reshape((batch_size, -1))
    for n in range(0, arr.shape[1], seq_length):
        x = arr[:, n : n + seq_length]
        y = np.zeros_like(x)
        try:
            y[:, :-1], y[:, -1] = x[:, 1:], arr[:, n + seq_length]
        except IndexError:
            y[:, :-1], y[:, -1] = x[:, 1:], arr[:, 0]
        yield x, y


class PeerCharRNN(nn.Module):
    def __init__(self, n_chars, n_hidden=512, n_layers=2, drop_prob=0.5):
        super().__init__()
        self.n_chars, self.n_hidden, self.n_layers = n_chars, n_hidden, n_layers
        self.lstm = nn.LSTM(n_chars, n_hidden, n_layers, dropout=drop_prob, batch_first=True)
        self.dropout = nn.Dropout(drop_prob)
        self.fc = nn.Linear(n_hidden, n_chars)

    def forward(self, x, hidden):
        r_output, hidden = self.lstm(x, hidden)
        out = self.dropout(r_output).contiguous().view(-1, self.n_hidden)
        return self.fc(out), hidden

    def init_hidden(self, batch_size):
        weight = next(self.parameters()).data
        return (
            weight.new(self.n_layers, batch_size, self.n_hidden).zero_(),
            weight.new(self.n_layers, batch_size, self.n_hidden).zero_(),
        )


def train_steps(net, data, batch_size=128, seq_length=100, lr=0.001, clip=5, epochs=1):
    """The notebook's train(): one Adam for all epochs, the hidden state reset at each epoch's start.
    Yields each step's loss, so a caller can time it or stop when a budget is spent."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        h = net.init_hidden(batch_size)
        for x, y in get_batches(data, batch_size, seq_length):
            x = one_hot_encode(x, net.n_chars)
            inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
            h = tuple([each.data for each in h])
            net.zero_grad()
            output, h = net(inputs, h)
            loss = criterion(output, targets.view(batch_size * seq_length).long())
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            yield loss.item()


def predict(net, char_id, h, top_k=5):
    x = one_hot_encode(np.array([[char_id]]), net.n_chars)
    inputs = torch.from_numpy(x)
    h = tuple([each.data for each in h])
    out, h = net(inputs, h)
    p = F.softmax(out, dim=1).data
    p, top_ch = p.topk(top_k)
    top_ch, p = top_ch.numpy().squeeze(), p.numpy().squeeze()
    return np.random.choice(top_ch, p=p / p.sum()), h


def sample(net, size, prime_ids, top_k=5):
    """The notebook's sample(): prime one character at a time, then generate `size` characters."""
    net.eval()
    with torch.no_grad():
        h = net.init_hidden(1)
        for char_id in prime_ids:
            char_id, h = predict(net, char_id, h, top_k)
        out = [char_id]
        for _ in range(size - 1):
            char_id, h = predict(net, out[-1], h, top_k)
            out.append(char_id)
    return out


class Evaluated(nn.Module):
    """The peer's network behind charrnn's model interface — ids in, (batch, steps, vocab) logits out —
    so both are scored by the same evaluate()."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids, hidden=None):
        batch, steps = ids.shape
        if hidden is None:
            hidden = self.net.init_hidden(batch)
        inputs = F.one_hot(ids.long(), self.net.n_chars).float()
        logits, hidden = self.net(inputs, hidden)
        return logits.view(batch, steps, -1), hidden
