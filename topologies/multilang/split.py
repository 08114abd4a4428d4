"""A bolt written with pystorm (the multi-lang library streamparse uses), run by
topologies/multilang_wordcount.py as a child process of a worker."""

from pystorm import Bolt


class SplitSentence(Bolt):
    def process(self, tup):
        for word in tup.values[0].split():
            self.emit([word])  # pystorm anchors it to tup and acks tup afterwards


if __name__ == "__main__":
    SplitSentence().run()
