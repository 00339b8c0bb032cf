"""The pipeline's step functions.

kfp serializes each function's source into the compiled pipeline and runs it
inside the step's image, so every import lives inside the function and names a
package that image installs (images/*/). The platform client is the project's
own package (images/base/platform-client), installed in the shared base image.

The download and upload steps take the platform credentials as parameters (the
seed's form) or, when those are empty, from the environment variables
PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY, which a Kubernetes Secret fills
when the pipeline is compiled with `credentials = "k8s-secret:NAME"`.
"""

from kfp.components import InputPath, OutputPath


def download_training_dataset(
    output: OutputPath(),
    training_dataset_uid: str,
    host: str,
    port: str,
    access_key: str,
    secret_key: str,
    platform_timeout: float = 300.0,
) -> None:
    """Log in to the platform and stream the training dataset zip to `output`/training_dataset.zip.

    `platform_timeout` is the longest wait, in seconds, for the platform to connect or to send
    the next bytes; a call that times out is tried again a few times, then the step fails.
    """
    import os

    from platform_client import PlatformClient

    # Empty parameters: the credentials come from a Kubernetes Secret, through the environment.
    access_key = access_key or os.environ.get("PLATFORM_ACCESS_KEY", "")
    secret_key = secret_key or os.environ.get("PLATFORM_SECRET_KEY", "")
    if not access_key or not secret_key:
        raise ValueError(
            "no platform credentials: pass access_key and secret_key, "
            "or set PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY"
        )
    os.makedirs(output, exist_ok=True)
    client = PlatformClient(
        host=host,
        port=port,
        access_key=access_key,
        secret_key=secret_key,
        timeout=(min(10.0, platform_timeout), platform_timeout),
    )
    path = client.download("training_dataset", training_dataset_uid, os.path.join(output, "training_dataset.zip"))
    print(f"downloaded training dataset {training_dataset_uid} to {path} ({os.path.getsize(path)} bytes)")


def training(
    input: InputPath(),
    output: OutputPath(),
    learning_rate: float,
    batch_size: int = 4,
    epochs: int = 1,
    record_accuracy: bool = True,
    max_samples: int = 0,
    allow_pickle_dataset: bool = False,
) -> None:
    """Unzip and split the dataset 80/10/10, train the LSTM, write model.zip (and model_accuracy.txt).

    `max_samples` > 0 keeps only the first N samples (the reference pipeline kept 100); 0 keeps all.
    The platform's object-array layout loads with a restricted unpickler that rebuilds numeric
    arrays and runs nothing; each pair must be x (100, 3) and y (3,). `allow_pickle_dataset` is
    full unpickling, for a source you trust: it runs whatever code the file carries.
    """
    import os
    import tempfile

    import numpy as np
    from sklearn.model_selection import train_test_split
    from tensorflow.keras.layers import LSTM, Dense, Dropout
    from tensorflow.keras.models import Sequential
    from tensorflow.keras.optimizers import Adam

    from platform_client.archive import make_zip, safe_extract
    from platform_client.dataset import load_training_dataset

    work = tempfile.mkdtemp(prefix="training-")
    dataset_dir = os.path.join(work, "training_dataset")
    safe_extract(os.path.join(input, "training_dataset.zip"), dataset_dir)
    x, y = load_training_dataset(os.path.join(dataset_dir, "training_dataset.npy"), allow_pickle=allow_pickle_dataset)
    if max_samples < 0:
        raise ValueError(f"max_samples must be 0 (all samples) or more, got {max_samples}")
    if max_samples > 0:
        x, y = x[:max_samples], y[:max_samples]
    x, y = np.asarray(x, dtype="float32"), np.asarray(y, dtype="float32")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    x_test, x_validate, y_test, y_validate = train_test_split(x_test, y_test, test_size=0.5, random_state=42)
    print(f"samples: {len(x_train)} train, {len(x_validate)} validate, {len(x_test)} test")

    model = Sequential()
    model.add(LSTM(units=64, input_shape=(100, 3)))
    model.add(Dropout(0.2))
    model.add(Dense(32, activation="relu"))
    model.add(Dense(3, activation="linear"))
    model.compile(loss="mean_squared_error", optimizer=Adam(learning_rate=learning_rate), metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, validation_data=(x_validate, y_validate), verbose=2
    )

    os.makedirs(output, exist_ok=True)
    model_dir = os.path.join(work, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.h5"))
    make_zip(model_dir, os.path.join(output, "model.zip"))
    if record_accuracy:
        accuracy = float(history.history["accuracy"][-1])
        with open(os.path.join(output, "model_accuracy.txt"), "w") as handle:
            handle.write(f"{accuracy}")
        print(f"accuracy of the last epoch: {accuracy}")


def upload_model(
    input: InputPath(),
    model_uid: str,
    host: str,
    port: str,
    access_key: str,
    secret_key: str,
    platform_timeout: float = 300.0,
) -> None:
    """Upload `input`/model.zip as the model `model_uid`, and its accuracy when the training step recorded it.

    `platform_timeout`: as for `download_training_dataset`.
    """
    import os

    from platform_client import PlatformClient

    # As in download_training_dataset: empty parameters mean the environment holds the credentials.
    access_key = access_key or os.environ.get("PLATFORM_ACCESS_KEY", "")
    secret_key = secret_key or os.environ.get("PLATFORM_SECRET_KEY", "")
    if not access_key or not secret_key:
        raise ValueError(
            "no platform credentials: pass access_key and secret_key, "
            "or set PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY"
        )
    client = PlatformClient(
        host=host,
        port=port,
        access_key=access_key,
        secret_key=secret_key,
        timeout=(min(10.0, platform_timeout), platform_timeout),
    )
    client.upload("model", model_uid, os.path.join(input, "model.zip"))
    print(f"uploaded model {model_uid}")
    accuracy_path = os.path.join(input, "model_accuracy.txt")
    if os.path.exists(accuracy_path):
        with open(accuracy_path) as handle:
            accuracy = float(handle.read())
        client.upload_accuracy(model_uid, accuracy)
        print(f"recorded accuracy {accuracy} for model {model_uid}")
