"""The script from the question that started twinrun, ported to Keras 3 with its TF1 lines kept.

It seeds Python, NumPy and TensorFlow, pins the thread pools through a TF1 session, and still
trains differently every run. `twinrun lint` must name these lines (tests/test_lint.py pins
their numbers, so keep the line numbers of the TF1 block when editing):

- line 16: `PYTHONASHSEED` is misspelt, and even spelt right it would be set too late;
- line 26: `tf.compat.v1.set_random_seed` seeds TensorFlow's ops only, not Keras 3;
- lines 27, 29, 31: `ConfigProto`, `Session` and `K.set_session` configure a TF1 session that
  Keras 3 never uses (Keras 3 has no `set_session`: under Keras 3 line 31 raises
  AttributeError, which is how the question's code fails today).
"""

import os

os.environ['PYTHONASHSEED'] = '0'

import random as rn

import numpy as np
import tensorflow as tf
from keras import backend as K

np.random.seed(42)
rn.seed(12345)
tf.compat.v1.set_random_seed(1234)
session_conf = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                        inter_op_parallelism_threads=1)
sess = tf.compat.v1.Session(graph=tf.compat.v1.get_default_graph(), config=session_conf)
# The question's next line; it is what made the question's session settings (not) apply.
K.set_session(sess)

import keras
from keras import layers
from sklearn.model_selection import train_test_split

(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
x_train, x_val, y_train, y_val = train_test_split(
    x_train, y_train, test_size=0.2, stratify=y_train, random_state=42)
y_train, y_val, y_test = (keras.utils.to_categorical(y, 10) for y in (y_train, y_val, y_test))

model = keras.Sequential([
    keras.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3)),
    layers.BatchNormalization(),
    layers.Activation("relu"),
    layers.Conv2D(32, (3, 3)),
    layers.BatchNormalization(),
    layers.Activation("relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Dropout(0.25),
    layers.Flatten(),
    layers.Dense(512),
    layers.BatchNormalization(),
    layers.Activation("relu"),
    layers.Dropout(0.5),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
              metrics=["accuracy"])
early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                               restore_best_weights=True)
model.fit(x_train, y_train, batch_size=64, epochs=200, validation_data=(x_val, y_val),
          callbacks=[early_stopping])
print(model.evaluate(x_test, y_test, verbose=0))
